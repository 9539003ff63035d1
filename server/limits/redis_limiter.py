"""The Redis limiter: one limit across replicas.

One Lua script reads every scope's counters and, only if none is exhausted,
counts the request in all of them — atomic, so two replicas can never both
take the last request of a window. Tokens are added afterwards in one
MULTI/EXEC. Window numbers come from the caller's clock (see `base`).

When Redis cannot be reached the limiter never crashes the request: it fails
open (lets the request through, unlimited, and says so in the log) or fails
closed (`LimiterUnavailable`, 503), as configured. After a failure it leaves
Redis alone for `retry_interval` seconds so requests do not each wait for a
connect timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from server.limits.base import Check, LimiterUnavailable, Slot, Verdict, slot, verdict

log = logging.getLogger("tokenwire.limits")

_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

# KEYS: requests and tokens counter of each scope, in pairs.
# ARGV: request limit, token limit (-1: none) and TTL in ms of each scope, in triples.
# Returns {allowed (0/1), requests_1, tokens_1, requests_2, tokens_2, ...}.
_ACQUIRE = """
local n = #KEYS / 2
local counts = {}
local blocked = false
for i = 1, n do
  local r = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local t = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local rl = tonumber(ARGV[3 * i - 2])
  local tl = tonumber(ARGV[3 * i - 1])
  if (rl >= 0 and r >= rl) or (tl >= 0 and t >= tl) then blocked = true end
  counts[2 * i - 1] = r
  counts[2 * i] = t
end
if not blocked then
  for i = 1, n do
    counts[2 * i - 1] = redis.call('INCR', KEYS[2 * i - 1])
    redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[3 * i])
  end
end
table.insert(counts, 1, blocked and 0 or 1)
return counts
"""


class RedisLimiter:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "tokenwire:rl:",
        fail_open: bool = True,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._fail_open = fail_open
        self._retry_interval = retry_interval
        self._clock = clock
        self._script = client.register_script(_ACQUIRE)
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 0.5, **options: Any) -> RedisLimiter:
        """A limiter on a new connection pool; `timeout` bounds connecting and each command."""
        client = aioredis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return cls(client, **options)

    async def acquire(self, checks: Sequence[Check]) -> Verdict:
        if not checks:
            return Verdict(True)
        now = self._clock()
        if now < self._down_until:
            return self._unavailable()
        slots = [slot(c, now) for c in checks]
        try:
            raw = await self._script(keys=self._keys(slots), args=_args(checks, slots))
        except _ERRORS as e:
            self._failed(now, e)
            return self._unavailable()
        counts = [(int(raw[i]), int(raw[i + 1])) for i in range(1, len(raw), 2)]
        return verdict(checks, slots, counts, allowed=bool(int(raw[0])))

    async def spend(self, checks: Sequence[Check], tokens: int) -> None:
        now = self._clock()
        if not checks or tokens <= 0 or now < self._down_until:
            return
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for c in checks:
                    s = slot(c, now)
                    pipe.incrby(self._prefix + s.tokens_key, tokens)
                    pipe.pexpire(self._prefix + s.tokens_key, s.ttl_ms)
                await pipe.execute()
        except _ERRORS as e:
            self._failed(now, e)  # the request is over: its tokens go uncounted

    async def aclose(self) -> None:
        await self._client.aclose()

    def _keys(self, slots: Sequence[Slot]) -> list[str]:
        return [self._prefix + k for s in slots for k in (s.requests_key, s.tokens_key)]

    def _failed(self, now: float, error: BaseException) -> None:
        self._down_until = now + self._retry_interval
        mode = "open" if self._fail_open else "closed"
        log.warning(
            "redis limiter unreachable (%s); failing %s for %gs", error, mode, self._retry_interval
        )

    def _unavailable(self) -> Verdict:
        if self._fail_open:
            return Verdict(True, degraded=True)
        raise LimiterUnavailable("The rate limiter is unavailable; try again shortly.")


def _args(checks: Sequence[Check], slots: Sequence[Slot]) -> list[int]:
    out: list[int] = []
    for c, s in zip(checks, slots, strict=True):
        rate = c.rate
        out += [_limit(rate.requests), _limit(rate.tokens), s.ttl_ms]
    return out


def _limit(value: int | None) -> int:
    return -1 if value is None else value
