"""The OpenAI-compatible provider: OpenAI, OpenRouter, vLLM, Ollama, llama.cpp server, LiteLLM.

Requests go out as `POST {base_url}/chat/completions`. A streamed call asks for
`stream: true` and `stream_options.include_usage`, so the upstream's own count
arrives as a last chunk; a unary call asks for the whole answer at once, which
costs the upstream and tokenwire about a fifth less than reading a stream
(bench/upstream.py). Tool schemas and `json_schema` travel as the caller wrote
them (key order and integers intact). Chunks, or each choice of a whole answer,
come back as `Delta`s: content, reasoning (`reasoning` or `reasoning_content`),
refusal, tool-call deltas (id and name on a call's first delta only), logprobs
and finish reasons; then one `Usage`, estimated here when the upstream sent none.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from server.errors import InvalidRequest
from server.providers.base import (
    ALL_PARAMETERS,
    ContentPart,
    Delta,
    Event,
    FinishReason,
    GenerationRequest,
    Message,
    ResponseFormat,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    TopLogprob,
    Usage,
)
from server.providers.http.config import UpstreamConfig
from server.providers.http.echo import redacted_json
from server.providers.http.errors import bad_chunk, decode_json, error_from_payload
from server.providers.http.exchange import HttpProvider, drain, load_json_text
from server.providers.http.sse import SSEEvent
from server.tokens import estimated_usage

DEFAULT_SUPPORTED = ALL_PARAMETERS  # an OpenAI-compatible server takes them all

_FINISH = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}


class OpenAICompatProvider(HttpProvider):
    """A provider speaking OpenAI's chat-completions protocol, streamed or whole."""

    default_supported = DEFAULT_SUPPORTED
    path = "/chat/completions"

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Event, None]:
        reader = _ChunkReader(self._config)
        body = request_body(request, self._config)
        if request.streamed:
            async for delta in self._streamed(body, reader):
                yield delta
        else:
            for delta in reader.answer(await self._fetch(body)):
                yield delta
        yield reader.usage or estimated_usage(request, reader.generated_chars)

    async def _streamed(
        self, body: dict[str, Any], reader: _ChunkReader
    ) -> AsyncGenerator[Delta, None]:
        events = self._events(body)
        # aclosing: when our consumer closes us, the upstream response closes too.
        async with contextlib.aclosing(events):
            async for event in events:
                if len(event.data) < 16 and event.data.strip() == "[DONE]":
                    reader.done = True
                    break
                for delta in reader.read(event):
                    yield delta
            if reader.done:
                await drain(events)
        if not (reader.done or reader.finished):
            raise bad_chunk(self._config, "a stream that ended before it finished")

    def upstream_body(self, request: GenerationRequest) -> str:
        return redacted_json(request_body(request, self._config), self._config)

    def auth_headers(self) -> dict[str, str]:
        key = self._config.api_key
        return {"authorization": f"Bearer {key}"} if key else {}


# --- request translation -------------------------------------------------------------------


def request_body(request: GenerationRequest, config: UpstreamConfig) -> dict[str, Any]:
    """The JSON body of a chat-completions request, streaming if the caller streams."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [_message(m) for m in request.messages],
        "stream": request.streamed,
    }
    if request.streamed:
        body["stream_options"] = {"include_usage": True}
    body.update(_sampling(request, config))
    if request.tools:
        body["tools"] = [_tool(t) for t in request.tools]
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.response_format is not None:
        body["response_format"] = _response_format(request.response_format)
    return body


def _sampling(request: GenerationRequest, config: UpstreamConfig) -> dict[str, Any]:
    optional: dict[str, object] = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        config.max_tokens_param: request.max_tokens,
        "seed": request.seed,
        "frequency_penalty": request.frequency_penalty,
        "presence_penalty": request.presence_penalty,
        "top_logprobs": request.top_logprobs,
        "parallel_tool_calls": request.parallel_tool_calls,
        "reasoning_effort": request.reasoning_effort,
        "user": request.user,
    }
    out: dict[str, Any] = {k: v for k, v in optional.items() if v is not None}
    if request.stop:
        out["stop"] = list(request.stop)
    if request.n != 1:
        out["n"] = request.n
    if request.logit_bias:
        # JSON object keys are strings; token ids become their decimal text.
        out["logit_bias"] = {str(k): v for k, v in request.logit_bias.items()}
    if request.logprobs:
        out["logprobs"] = True
    return out


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": _content(message.content)}
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [_tool_call(c) for c in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def _content(content: str | tuple[ContentPart, ...] | None) -> str | list[dict[str, Any]] | None:
    if content is None or isinstance(content, str):
        return content
    return [_cached(_part(p), p) for p in content]


def _cached(block: dict[str, Any], part: ContentPart) -> dict[str, Any]:
    """`cache_control` passed on as given (OpenRouter, LiteLLM forward it to Anthropic)."""
    if part.cache_control is not None:
        block["cache_control"] = part.cache_control.json()
    return block


def _part(part: ContentPart) -> dict[str, Any]:
    if part.type == "text":
        return {"type": "text", "text": part.text or ""}
    if part.type == "image_url":
        image = _present({"url": part.url, "detail": part.detail})
        return {"type": "image_url", "image_url": image}
    if part.type == "input_audio":
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": part.format}}
    if part.type == "file":
        file = {"file_data": part.data, "file_id": part.file_id, "filename": part.filename}
        return {"type": "file", "file": _present(file)}
    raise InvalidRequest(f"unknown content part type {part.type!r}", param="messages")


def _present(fields: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in fields.items() if v is not None}


def _tool_call(call: ToolCall) -> dict[str, Any]:
    function = {"name": call.name, "arguments": call.arguments}
    return {"id": call.id, "type": "function", "function": function}


def _tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = load_json_text(tool.parameters, "tools")
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "function":
        return {"type": "function", "function": {"name": choice.function}}
    return choice.mode


def _response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    # OpenAI requires a name; "response" is what its SDK helpers use too.
    schema: dict[str, Any] = {"name": fmt.name or "response"}
    if fmt.schema is not None:
        schema["schema"] = load_json_text(fmt.schema, "response_format")
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": schema}


# --- stream translation --------------------------------------------------------------------


@dataclass
class _Calls:
    """The tool calls of one choice: which index an id has, what was already sent."""

    by_id: dict[str, int] = field(default_factory=dict)
    sent_id: set[int] = field(default_factory=set)
    sent_name: set[int] = field(default_factory=set)
    last: int = -1


class _ChunkReader:
    """Turns chunk events into deltas, remembering what the stream's end needs."""

    def __init__(self, config: UpstreamConfig) -> None:
        self._config = config
        self._calls: dict[int, _Calls] = {}
        self.usage: Usage | None = None
        self.finished = False
        self.done = False
        self.generated_chars = 0

    def read(self, event: SSEEvent) -> list[Delta]:
        chunk = decode_json(self._config, event.data)
        if event.event == "error" or chunk.get("error"):
            raise error_from_payload(self._config, chunk)
        try:
            return self._chunk(chunk)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise bad_chunk(self._config, "a chunk of unexpected shape", event.data) from exc

    def answer(self, completion: dict[str, Any]) -> list[Delta]:
        """A whole (non-streamed) completion as deltas: each choice's message is one delta."""
        if completion.get("error"):
            raise error_from_payload(self._config, completion)
        try:
            if not completion.get("choices"):
                raise ValueError("no choices")
            for choice in completion["choices"]:
                # A whole message's calls carry no index: their order is it.
                for i, call in enumerate((choice.get("message") or {}).get("tool_calls") or ()):
                    call.setdefault("index", i)
            return self._chunk(completion, "message")
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            text = orjson.dumps(completion).decode()
            raise bad_chunk(self._config, "an answer of unexpected shape", text) from exc

    def _chunk(self, chunk: dict[str, Any], part: str = "delta") -> list[Delta]:
        if chunk.get("usage"):
            # Some servers repeat a running total on every chunk: the last one wins.
            self.usage = _usage(chunk["usage"])
        deltas = []
        for choice in chunk.get("choices") or ():
            delta = self._choice(choice, part)
            if delta is not None:
                deltas.append(delta)
        return deltas

    def _choice(self, raw: dict[str, Any], part: str) -> Delta | None:
        """One choice of a chunk (its `delta`) or of a whole answer (its `message`)."""
        index = int(raw.get("index") or 0)
        delta = raw.get(part) or {}
        calls = delta.get("tool_calls")
        out = Delta(
            content=_text(delta.get("content")),
            # Some servers send both names with the same text: take one.
            reasoning=_text(delta.get("reasoning")) or _text(delta.get("reasoning_content")),
            refusal=_text(delta.get("refusal")),
            tool_calls=tuple(self._tool_call(index, c) for c in calls) if calls else (),
            logprobs=_logprobs(raw.get("logprobs")),
            finish_reason=_finish(raw.get("finish_reason")),
            choice=index,
        )
        if out.finish_reason is not None:
            self.finished = True
        self.generated_chars += len(out.content) + len(out.reasoning) + len(out.refusal)
        if calls:
            self.generated_chars += sum(len(c.arguments) for c in out.tool_calls)
        return out if _carries(out) else None

    def _tool_call(self, choice: int, raw: dict[str, Any]) -> ToolCallDelta:
        calls = self._calls.setdefault(choice, _Calls())
        function = raw.get("function") or {}
        call_id, name = raw.get("id") or None, function.get("name") or None
        index = _call_index(calls, raw.get("index"), call_id)
        calls.last = index
        # id and name go out once per call, however often the upstream repeats them.
        if call_id is not None:
            calls.by_id[call_id] = index
            call_id = None if index in calls.sent_id else _text(call_id)
            calls.sent_id.add(index)
        if name is not None:
            name = None if index in calls.sent_name else _text(name)
            calls.sent_name.add(index)
        arguments = _text(function.get("arguments"))
        return ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments)


def _carries(delta: Delta) -> bool:
    """Whether a delta says anything beyond its choice index."""
    return bool(
        delta.content
        or delta.reasoning
        or delta.refusal
        or delta.tool_calls
        or delta.logprobs
        or delta.finish_reason is not None
    )


def _call_index(calls: _Calls, index: object, call_id: str | None) -> int:
    """The call's index; servers that omit it are matched by id, else by order."""
    if isinstance(index, int):
        return index
    if index is not None:
        raise TypeError(f"tool call index {index!r} is not an integer")
    if call_id is not None:
        return calls.by_id.get(call_id, len(calls.by_id))
    return max(calls.last, 0)


def _text(value: object) -> str:
    if type(value) is str:  # the usual case first: this runs several times per chunk
        return value
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _finish(raw: object) -> FinishReason | None:
    if not raw:
        return None
    # Servers invent their own (`eos`, `abort`): a finished choice is a stop.
    return _FINISH.get(str(raw), FinishReason.STOP)


def _logprobs(raw: dict[str, Any] | None) -> tuple[TokenLogprob, ...]:
    if not raw:
        return ()
    return tuple(_token_logprob(t) for t in raw.get("content") or ())


def _token_logprob(raw: dict[str, Any]) -> TokenLogprob:
    top = tuple(
        TopLogprob(token=_text(t["token"]), logprob=float(t["logprob"]), bytes=_bytes(t))
        for t in raw.get("top_logprobs") or ()
    )
    return TokenLogprob(
        token=_text(raw["token"]), logprob=float(raw["logprob"]), bytes=_bytes(raw), top=top
    )


def _bytes(raw: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(b) for b in raw.get("bytes") or ())


def _usage(raw: dict[str, Any]) -> Usage:
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(prompt_details.get("cached_tokens") or 0),
        cache_write_tokens=int(prompt_details.get("cache_write_tokens") or 0),  # OpenRouter's
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )
