"""The in-process limiter: fixed-window counters in a dict, for one replica.

Everything between two awaits runs without interruption on the event loop,
so check-then-count needs no lock. Expired windows are dropped once a
minute (by the injected clock).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from server.limits.base import Check, Verdict, is_blocked, slot, verdict

_PRUNE_EVERY = 60.0


class MemoryLimiter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: dict[str, int] = {}
        self._expires: dict[str, float] = {}
        self._next_prune = 0.0

    async def acquire(self, checks: Sequence[Check]) -> Verdict:
        now = self._clock()
        self._prune(now)
        slots = [slot(c, now) for c in checks]
        counts = [(self._get(s.requests_key), self._get(s.tokens_key)) for s in slots]
        if any(is_blocked(c, r, t) for c, (r, t) in zip(checks, counts, strict=True)):
            return verdict(checks, slots, counts, allowed=False)
        for s in slots:
            self._add(s.requests_key, 1, now + s.ttl_ms / 1000)
        counts = [(r + 1, t) for r, t in counts]
        return verdict(checks, slots, counts, allowed=True)

    async def spend(self, checks: Sequence[Check], tokens: int) -> None:
        now = self._clock()
        for c in checks:
            s = slot(c, now)
            self._add(s.tokens_key, tokens, now + s.ttl_ms / 1000)

    async def aclose(self) -> None:
        self._counts.clear()
        self._expires.clear()

    def _get(self, key: str) -> int:
        return self._counts.get(key, 0)

    def _add(self, key: str, amount: int, expires: float) -> None:
        self._counts[key] = self._counts.get(key, 0) + amount
        self._expires[key] = expires

    def _prune(self, now: float) -> None:
        if now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY
        for key in [k for k, at in self._expires.items() if at <= now]:
            del self._counts[key], self._expires[key]
