"""Tool calls read from a local model's text as it streams, as OpenAI streams them.

The grammar (`tools`) fixes the layout of the calls, so a call's name is
complete once `, "arguments": ` follows it, and its arguments end where their
JSON object closes. Each call's first delta carries its index, a new id and
its name; its arguments follow in pieces as the tokens arrive.

`CallGate` and `ChoiceGate` have `OutputGate`'s interface (`push`, `finish`,
`stopped`), so the engine's decoder reads calls, text, or (for
`tool_choice: auto`) whichever the model starts with, the same way.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from server.providers.base import Delta, FinishReason, TokenLogprob, ToolCallDelta
from server.providers.llama.text import OutputGate

_NAME, _ARGUMENTS = '{"name": ', ', "arguments": '


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


@dataclass(slots=True)
class _Reading:
    """Where the reader is inside a call's arguments (a JSON object)."""

    depth: int = 0
    in_string: bool = False
    escaped: bool = False

    def step(self, char: str) -> bool:
        """Track one character; True when it closes the arguments."""
        if self.escaped:
            self.escaped = False
        elif self.in_string:
            self.escaped = char == "\\"
            self.in_string = char != '"'
        elif char == '"':
            self.in_string = True
        elif char in "{[":
            self.depth += 1
        elif char in "}]":
            self.depth -= 1
            return self.depth == 0
        return False


@dataclass(slots=True)
class CallReader:
    """Turns the grammar's call text into `ToolCallDelta`s, piece by piece."""

    count: int = 0  # calls begun
    _text: str = ""
    _at: int = 0  # how far `_text` has been read
    _arguments: _Reading | None = None  # set while inside a call's arguments
    _out: list[ToolCallDelta] = field(default_factory=list)

    def feed(self, text: str) -> tuple[ToolCallDelta, ...]:
        self._text += text
        while self._advance():
            pass
        out, self._out = self._out, []
        return tuple(_merged(out))

    def _advance(self) -> bool:
        """Read what can be read; False when more text is needed."""
        if self._arguments is not None:
            return self._read_arguments(self._arguments)
        start = self._text.find(_NAME, self._at)
        end = self._text.find(_ARGUMENTS, start) if start >= 0 else -1
        if end < 0:
            return False
        name = json.loads(self._text[start + len(_NAME) : end])
        self._out.append(ToolCallDelta(index=self.count, id=new_call_id(), name=name))
        self.count += 1
        self._at = end + len(_ARGUMENTS)
        self._arguments = _Reading()
        return True

    def _read_arguments(self, reading: _Reading) -> bool:
        start = self._at
        for offset, char in enumerate(self._text[start:]):
            if reading.step(char):
                self._at = start + offset + 1
                self._emit(self._text[start : self._at])
                self._arguments = None
                return True
        self._at = len(self._text)
        self._emit(self._text[start:])
        return False

    def _emit(self, piece: str) -> None:
        if piece.strip():
            self._out.append(ToolCallDelta(index=self.count - 1, arguments=piece))


def _merged(pieces: list[ToolCallDelta]) -> list[ToolCallDelta]:
    """One piece per call and read: a call's name and its first arguments travel together."""
    merged: list[ToolCallDelta] = []
    for piece in pieces:
        if merged and merged[-1].index == piece.index:
            last = merged[-1]
            piece = ToolCallDelta(last.index, last.id, last.name, last.arguments + piece.arguments)
            merged[-1] = piece
        else:
            merged.append(piece)
    return merged


class CallGate:
    """The model answers with calls only (`required` or a named function)."""

    stopped = False  # the grammar ends the answer; no stop string applies to calls

    def __init__(self) -> None:
        self._reader = CallReader()

    def push(self, text: str, logprob: TokenLogprob | None = None) -> Delta | None:
        calls = self._reader.feed(text)
        return Delta(tool_calls=calls) if calls else None

    def finish(self, reason: FinishReason, tail: str = "") -> Delta:
        calls = self._reader.feed(tail)
        if reason == FinishReason.STOP and self._reader.count:
            reason = FinishReason.TOOL_CALLS
        return Delta(tool_calls=calls, finish_reason=reason)


class ChoiceGate:
    """`tool_choice: auto`: calls if the answer starts with `<`, else text."""

    def __init__(self, text: OutputGate) -> None:
        self._text = text
        self._chosen: OutputGate | CallGate | None = None
        self._held = ""
        self._logprobs: list[TokenLogprob] = []

    @property
    def stopped(self) -> bool:
        return self._chosen is not None and self._chosen.stopped

    def push(self, text: str, logprob: TokenLogprob | None = None) -> Delta | None:
        if self._chosen is not None:
            return self._chosen.push(text, logprob)
        self._held += text
        if logprob is not None:
            self._logprobs.append(logprob)
        if not self._held:
            return None  # half a character: not decided yet
        self._chosen = CallGate() if self._held.startswith("<") else self._text
        return self._release()

    def finish(self, reason: FinishReason, tail: str = "") -> Delta:
        if self._chosen is None:
            self._chosen = self._text
            self._release()  # logprobs of tokens without text; `finish` sends them
        return self._chosen.finish(reason, tail)

    def _release(self) -> Delta | None:
        assert self._chosen is not None
        early, last = self._logprobs[:-1], (self._logprobs[-1] if self._logprobs else None)
        for logprob in early:  # tokens that ended inside a character: they leave with its text
            self._chosen.push("", logprob)
        return self._chosen.push(self._held, last)
