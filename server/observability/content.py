"""Prompt and completion text on spans, only when `--otlp-capture-content` asks for it.

The GenAI semantic conventions' opt-in attributes: `gen_ai.input.messages` and
`gen_ai.output.messages` on a request's span, each the JSON text of `{role, parts}`
messages (parts `text`, `tool_call`, `tool_call_response`; output messages add their
`finish_reason`), and `gen_ai.tool.call.arguments` / `gen_ai.tool.call.result` on a tool's.
Prompts can be large and spans are held in memory until they leave, so every attribute is
bounded: its texts share `MAX_CHARS` characters, in order, and what does not fit is cut.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from tokenwire.chat.v1 import chat_pb2, message_pb2

MAX_CHARS = 8192  # characters of text one attribute carries, all its parts together
CUT = "…"  # marks a text that was cut
INPUT = "gen_ai.input.messages"
OUTPUT = "gen_ai.output.messages"


class Budget:
    """The characters an attribute has left; each text takes what it needs of them."""

    def __init__(self, chars: int = MAX_CHARS) -> None:
        self.left = chars

    def take(self, text: str) -> str:
        if len(text) <= self.left:
            self.left -= len(text)
            return text
        kept, self.left = text[: self.left], 0
        return kept + CUT


def bounded(text: str, chars: int = MAX_CHARS) -> str:
    """One text (a tool's arguments or result) within `chars` characters."""
    return Budget(chars).take(text)


def input_messages(messages: Iterable[message_pb2.ChatMessage]) -> str:
    """The messages sent to the model as `gen_ai.input.messages` (JSON text)."""
    budget = Budget()
    out = [{"role": _role(m), "parts": _parts(m, budget)} for m in messages]
    return orjson.dumps(out).decode()


class Output:
    """A request's answers (one per choice), as `gen_ai.output.messages` (JSON text)."""

    def __init__(self) -> None:
        self._budget = Budget()
        self._messages: list[dict[str, Any]] = []

    def add(
        self,
        text: str,
        tool_calls: Iterable[message_pb2.ToolCall],
        finish: chat_pb2.FinishReason.ValueType,
    ) -> str:
        """Add one choice's answer; the attribute's value with every answer so far."""
        parts = _text(text, self._budget) + [_call(c, self._budget) for c in tool_calls]
        reason = chat_pb2.FinishReason.Name(finish).removeprefix("FINISH_REASON_").lower()
        self._messages.append({"role": "assistant", "parts": parts, "finish_reason": reason})
        return orjson.dumps(self._messages).decode()


def _role(m: message_pb2.ChatMessage) -> str:
    """system, user, assistant or tool (a developer message is the system's, as the
    conventions know no developer role)."""
    name = message_pb2.Role.Name(m.role).removeprefix("ROLE_").lower()
    return "system" if name == "developer" else name


def _parts(m: message_pb2.ChatMessage, budget: Budget) -> list[dict[str, Any]]:
    if m.role == message_pb2.ROLE_TOOL:
        response = budget.take(_content(m))
        return [{"type": "tool_call_response", "id": m.tool_call_id, "response": response}]
    return _text(_content(m), budget) + [_call(c, budget) for c in m.tool_calls]


def _content(m: message_pb2.ChatMessage) -> str:
    if m.HasField("content_parts"):  # images, audio and files are not text: left out
        return "".join(p.text for p in m.content_parts.parts if p.HasField("text"))
    return m.content_text


def _text(text: str, budget: Budget) -> list[dict[str, Any]]:
    return [{"type": "text", "content": budget.take(text)}] if text else []


def _call(call: message_pb2.ToolCall, budget: Budget) -> dict[str, Any]:
    return {
        "type": "tool_call",
        "id": call.id,
        "name": budget.take(call.function.name),
        "arguments": budget.take(call.function.arguments),
    }
