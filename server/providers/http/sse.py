"""An incremental Server-Sent-Events parser, shared by the HTTP providers.

Follows the WHATWG event-stream rules that matter for LLM upstreams: lines end
in CRLF, LF or CR (a CRLF may be split across two network chunks); a line
starting with `:` is a comment (keep-alives); `field: value` drops one space
after the colon; several `data:` lines join with `\\n`; a blank line
dispatches the event, unless it carried no data; an event cut off by the end
of the stream is discarded, never half-delivered.

The parser knows nothing of HTTP clients or JSON: feed it bytes, get `SSEEvent`s.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

# An upstream that never sends a line break must not grow our buffer forever.
DEFAULT_MAX_EVENT_CHARS = 4 * 1024 * 1024

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class SSEError(ValueError):
    """The byte stream cannot be an event stream (an event beyond the size limit)."""


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event: its type (`message` unless named) and its data; read-only (not
    frozen, as a frozen `__init__` costs an `object.__setattr__` per field, per event)."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Turns arbitrary byte chunks into complete events, keeping partial lines."""

    def __init__(self, max_event_chars: int = DEFAULT_MAX_EVENT_CHARS) -> None:
        self._max = max_event_chars
        # The spec decodes UTF-8 with replacement; incremental so a character
        # split across chunks survives.
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._last_id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse `chunk`; return the events it completed, in order."""
        text = self._pending + self._text.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        return self._consume(text)

    def close(self) -> list[SSEEvent]:
        """End of stream: finish a held-back line; drop an undispatched event."""
        tail = self._pending + self._text.decode(b"", final=True)
        self._pending = ""
        lines = _LINE_BREAK.split(tail)
        lines.pop()  # an unterminated last line: the cut-off event is dropped anyway
        events = [event for line in lines if (event := self._line(line)) is not None]
        self._reset_event()
        return events

    def _consume(self, text: str) -> list[SSEEvent]:
        if text.endswith("\n\n") and "\r" not in text and not (self._data or self._event):
            return self._blocks(text)
        lines = _LINE_BREAK.split(text)
        self._pending = lines.pop()
        # A trailing CR may be the first half of a CRLF: wait for the next byte.
        if text.endswith("\r"):
            self._pending = lines.pop() + "\r"
        if len(self._pending) > self._max:
            raise SSEError(f"event stream line longer than {self._max} characters")
        return [event for line in lines if (event := self._line(line)) is not None]

    def _blocks(self, text: str) -> list[SSEEvent]:
        """Whole events and nothing after them, lines ending in LF: what upstreams send.

        The same rules, with each event's lines taken at once: a lone `data: ` line (the
        usual event) is dispatched without the general line-by-line walk.
        """
        self._pending = ""
        events = []
        for block in text[:-2].split("\n\n"):
            if block.startswith("data:") and "\n" not in block and len(block) < self._max:
                data = block[6:] if block.startswith("data: ") else block[5:]
                events.append(SSEEvent(data, "message", self._last_id))
                continue
            for line in [*block.split("\n"), ""]:  # "": the blank line ending the event
                if (event := self._line(line)) is not None:
                    events.append(event)
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        self._field(name, value.removeprefix(" "))
        return None

    def _field(self, name: str, value: str) -> None:
        if name == "data":
            self._size += len(value) + 1
            if self._size > self._max:
                raise SSEError(f"event data longer than {self._max} characters")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        # `retry` and unknown fields are ignored, as the spec says.

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._reset_event()
            return None
        event = SSEEvent(
            data="\n".join(self._data), event=self._event or "message", id=self._last_id
        )
        self._reset_event()
        return event

    def _reset_event(self) -> None:
        self._event = ""
        self._data = []
        self._size = 0


async def aiter_sse(
    chunks: AsyncIterable[bytes], max_event_chars: int = DEFAULT_MAX_EVENT_CHARS
) -> AsyncIterator[SSEEvent]:
    """Events from a byte stream such as an HTTP response body."""
    decoder = SSEDecoder(max_event_chars)
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event
