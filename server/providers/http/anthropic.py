"""The Anthropic provider: the Messages API (`POST {base_url}/v1/messages`), streamed.

Requests are translated from the OpenAI shape: system and developer messages
become the top-level `system`; consecutive same-role turns merge (Anthropic
requires alternation); assistant tool calls become `tool_use` blocks and tool
messages `tool_result` blocks in a user turn; `stop` becomes `stop_sequences`;
`max_tokens`, which Anthropic requires, defaults to the config's.

The stream comes back as events: `message_start` (input usage),
`content_block_start` (a `tool_use` block opens a tool call with its id and
name), `content_block_delta` (text, tool-argument JSON, thinking),
`message_delta` (stop reason, output usage), `message_stop`, and `error`,
which becomes the matching typed error.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, Callable
from typing import Any

from server.errors import InvalidRequest
from server.providers.base import (
    ContentPart,
    Delta,
    Event,
    FinishReason,
    GenerationRequest,
    Message,
    Tool,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from server.providers.http.config import UpstreamConfig
from server.providers.http.echo import redacted_json
from server.providers.http.errors import bad_chunk, decode_json, error_from_payload
from server.providers.http.exchange import HttpProvider, drain, load_json_text
from server.providers.http.sse import SSEEvent
from server.tokens import estimated_usage

ANTHROPIC_VERSION = "2023-06-01"

# No response_format, logprobs, seed, n, penalties or logit_bias in the Messages API.
DEFAULT_SUPPORTED = frozenset(
    {
        "temperature",
        "top_p",
        "max_completion_tokens",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    }
)

_FINISH = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}

_DATA_URL = re.compile(r"data:(?P<type>[^;,]+);base64,(?P<data>.*)", re.DOTALL)
_EMPTY_SCHEMA = {"type": "object", "properties": {}}


class AnthropicProvider(HttpProvider):
    """A provider speaking Anthropic's streaming Messages API over one pooled aiohttp session."""

    default_supported = DEFAULT_SUPPORTED
    path = "/v1/messages"

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Event, None]:
        body = request_body(request, self._config)
        reader = _EventReader(self._config)
        events = self._events(body)
        # aclosing: when our consumer closes us, the upstream response closes too.
        async with contextlib.aclosing(events):
            async for event in events:
                for delta in reader.read(event):
                    yield delta
                if reader.stopped:
                    break
            if reader.stopped:
                await drain(events)
        if not reader.stopped:
            raise bad_chunk(self._config, "a stream that ended before message_stop")
        yield reader.usage() or estimated_usage(request, reader.generated_chars)

    def upstream_body(self, request: GenerationRequest) -> str:
        return redacted_json(request_body(request, self._config), self._config)

    def auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self._config.api_key:
            headers["x-api-key"] = self._config.api_key
        return headers


# --- request translation -------------------------------------------------------------------


def request_body(request: GenerationRequest, config: UpstreamConfig) -> dict[str, Any]:
    """The JSON body of a streaming Messages API request."""
    system, turns = _conversation(request.messages)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or config.default_max_tokens,
        "messages": turns,
        "stream": True,
    }
    if system:
        body["system"] = system
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.temperature is not None:
        # OpenAI's range is [0, 2], Anthropic's [0, 1]: clamp rather than fail.
        body["temperature"] = min(request.temperature, 1.0)
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.tools:
        body["tools"] = [_tool(t) for t in request.tools]
        choice = _tool_choice(request.tool_choice, request.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice
    if request.user:
        body["metadata"] = {"user_id": request.user}
    return body


def _conversation(
    messages: tuple[Message, ...],
) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """The system prompt (joined text, or text blocks when one carries a cache breakpoint)
    and the alternating user/assistant turns."""
    system: list[Message] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            system.append(message)
            continue
        role, blocks = _turn(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return _system(system), turns


def _system(messages: list[Message]) -> str | list[dict[str, Any]]:
    parts = [p for m in messages if not isinstance(m.content, str) for p in m.content or ()]
    if not any(p.cache_control for p in parts):
        return "\n\n".join(text for m in messages if (text := m.text()))
    return [block for m in messages for block in _blocks(m.content)]


def _turn(message: Message) -> tuple[str, list[dict[str, Any]]]:
    if message.role == "user":
        return "user", _blocks(message.content)
    if message.role == "assistant":
        uses = [_tool_use(c.id, c.name, c.arguments) for c in message.tool_calls]
        return "assistant", _blocks(message.content) + uses
    if message.role == "tool":
        return "user", [_tool_result(message)]
    raise InvalidRequest(f"unknown message role {message.role!r}", param="messages")


def _blocks(content: str | tuple[ContentPart, ...] | None) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        # Anthropic rejects empty text blocks.
        return [{"type": "text", "text": content}] if content else []
    return [block for part in content if (block := _part(part)) is not None]


def _part(part: ContentPart) -> dict[str, Any] | None:
    block = _block(part)
    if block is not None and part.cache_control is not None:
        block["cache_control"] = part.cache_control.json()  # passed on as given
    return block


def _block(part: ContentPart) -> dict[str, Any] | None:
    if part.type == "text":
        return {"type": "text", "text": part.text} if part.text else None
    if part.type == "image_url" and part.url:
        return {"type": "image", "source": _source(part.url, "image/png")}
    if part.type == "file" and part.data:
        return {"type": "document", "source": _source(part.data, "application/pdf")}
    raise InvalidRequest(
        f"Anthropic does not accept {part.type} content in this form", param="messages"
    )


def _source(url_or_data: str, default_type: str) -> dict[str, str]:
    """A base64 source from a data URL; a URL source from a URL; else raw base64."""
    if match := _DATA_URL.fullmatch(url_or_data):
        return {"type": "base64", "media_type": match["type"], "data": match["data"]}
    if url_or_data.startswith(("http://", "https://")):
        return {"type": "url", "url": url_or_data}
    return {"type": "base64", "media_type": default_type, "data": url_or_data}


def _tool_use(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    tool_input = load_json_text(arguments or "{}", "messages")
    if not isinstance(tool_input, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param="messages")
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def _tool_result(message: Message) -> dict[str, Any]:
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    content = message.content if isinstance(message.content, str) else _blocks(message.content)
    if content:
        result["content"] = content
    return result


def _tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    schema = load_json_text(tool.parameters, "tools") if tool.parameters else _EMPTY_SCHEMA
    out["input_schema"] = schema
    return out


def _tool_choice(choice: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    mode = choice.mode if choice is not None else "auto"
    if mode == "none":
        return {"type": "none"}
    out: dict[str, Any] = {"type": {"required": "any", "function": "tool"}.get(mode, "auto")}
    if mode == "function" and choice is not None:
        out["name"] = choice.function
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    # Anthropic's default is auto: say nothing unless asked for something.
    return out if choice is not None or parallel is False else None


# --- stream translation --------------------------------------------------------------------


class _EventReader:
    """Turns Messages API events into deltas, collecting usage on the way."""

    def __init__(self, config: UpstreamConfig) -> None:
        self._config = config
        self._tool_index: dict[int, int] = {}  # content block index → tool call index
        self._tokens: dict[str, int] = {}
        self._finished = False
        self.stopped = False
        self.generated_chars = 0
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Delta]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
        }

    def read(self, event: SSEEvent) -> list[Delta]:
        payload = decode_json(self._config, event.data)
        kind = payload.get("type") or event.event
        if kind == "error":
            raise error_from_payload(self._config, payload)
        # ping, content_block_stop and event types added later carry nothing for us.
        handler = self._handlers.get(str(kind))
        if handler is None:
            return []
        try:
            return handler(payload)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise bad_chunk(self._config, "an event of unexpected shape", event.data) from exc

    def usage(self) -> Usage | None:
        """The upstream's count; Anthropic's input excludes cache reads and writes."""
        if not self._tokens:
            return None
        t = self._tokens
        cached, written = (
            t.get("cache_read_input_tokens", 0),
            t.get("cache_creation_input_tokens", 0),
        )
        prompt = t.get("input_tokens", 0) + cached + written
        return Usage(
            prompt, t.get("output_tokens", 0), cached_tokens=cached, cache_write_tokens=written
        )

    def _take_usage(self, raw: dict[str, Any] | None) -> None:
        # message_delta repeats cumulative counts: later values replace earlier ones.
        for key, value in (raw or {}).items():
            if key.endswith("_tokens") and isinstance(value, int):
                self._tokens[key] = value

    def _message_start(self, payload: dict[str, Any]) -> list[Delta]:
        self._take_usage(payload["message"].get("usage"))
        return []

    def _block_start(self, payload: dict[str, Any]) -> list[Delta]:
        block = payload["content_block"]
        if block["type"] == "tool_use":
            call = self._tool_index.setdefault(int(payload["index"]), len(self._tool_index))
            first = ToolCallDelta(index=call, id=str(block["id"]), name=str(block["name"]))
            return [Delta(tool_calls=(first,))]
        # Text and thinking blocks open empty in practice; keep any text they carry.
        return self._delta(content=block.get("text") or "", reasoning=block.get("thinking") or "")

    def _block_delta(self, payload: dict[str, Any]) -> list[Delta]:
        delta = payload["delta"]
        kind = delta["type"]
        if kind == "text_delta":
            return self._delta(content=delta["text"])
        if kind == "thinking_delta":
            return self._delta(reasoning=delta["thinking"])
        if kind == "input_json_delta" and delta["partial_json"]:
            call = self._tool_index[int(payload["index"])]
            self.generated_chars += len(delta["partial_json"])
            args = ToolCallDelta(index=call, arguments=str(delta["partial_json"]))
            return [Delta(tool_calls=(args,))]
        return []  # signature and citation deltas have no OpenAI counterpart

    def _message_delta(self, payload: dict[str, Any]) -> list[Delta]:
        self._take_usage(payload.get("usage"))
        reason = (payload.get("delta") or {}).get("stop_reason")
        if not reason:
            return []
        self._finished = True
        return [Delta(finish_reason=_FINISH.get(str(reason), FinishReason.STOP))]

    def _message_stop(self, payload: dict[str, Any]) -> list[Delta]:
        self.stopped = True
        # The last delta must carry a finish reason, even if message_delta had none.
        return [] if self._finished else [Delta(finish_reason=FinishReason.STOP)]

    def _delta(self, content: str = "", reasoning: str = "") -> list[Delta]:
        if not isinstance(content, str) or not isinstance(reasoning, str):
            raise TypeError("text deltas must be strings")
        self.generated_chars += len(content) + len(reasoning)
        return [Delta(content=content, reasoning=reasoning)] if content or reasoning else []
