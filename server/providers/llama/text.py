"""Generated text on its way out: stop strings held back, logprobs kept beside their text.

Text may only leave once it can no longer turn out to be the start of a stop
string, because a stop string must never appear in the output. `OutputGate`
holds back the shortest tail that could still grow into one and releases the
rest as a `Delta`, together with the logprobs of the tokens whose text starts
in the released part.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

from server.providers.base import Delta, FinishReason, TokenLogprob


class Utf8Stream:
    """Token bytes to text, holding back a character split across tokens."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, piece: bytes) -> str:
        return str(self._decoder.decode(piece))

    def flush(self) -> str:
        return str(self._decoder.decode(b"", final=True))


class OutputGate:
    """Releases generated text that cannot be part of a stop string."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        # (offset in `_held` where the token's text starts, its logprob)
        self._tokens: list[tuple[int, TokenLogprob]] = []
        self.stopped = False

    def push(self, text: str, logprob: TokenLogprob | None = None) -> Delta | None:
        """Add one token's text; returns what may be sent now, if anything."""
        if logprob is not None:
            self._tokens.append((len(self._held), logprob))
        self._held += text
        cut = _first_stop(self._held, self._stops)
        if cut is not None:
            self.stopped = True
            self._held = self._held[:cut]  # the stop string and all after it are dropped
            return None
        return self._release(len(self._held) - _open_stop_tail(self._held, self._stops))

    def finish(self, reason: FinishReason, tail: str = "") -> Delta:
        """The last delta: everything still held, and the finish reason.

        `tail` is what the UTF-8 decoder flushed at the end (replacement
        characters for a cut-off character); it is not searched for stops.
        """
        if not self.stopped:
            self._held += tail
        text, self._held = self._held, ""
        logprobs = tuple(lp for start, lp in self._tokens if start < len(text) or not self.stopped)
        self._tokens = []
        return Delta(content=text, logprobs=logprobs, finish_reason=reason)

    def _release(self, n: int) -> Delta | None:
        text, self._held = self._held[:n], self._held[n:]
        # A token with no text yet (half a character) waits for the text it starts.
        sent = tuple(lp for start, lp in self._tokens if start < n)
        self._tokens = [(start - n, lp) for start, lp in self._tokens if start >= n]
        return Delta(content=text, logprobs=sent) if text or sent else None


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the earliest stop string begins in `text`, if one is there."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _open_stop_tail(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that some stop string begins with."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest
