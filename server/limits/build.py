"""The limiter the configuration asks for: in-process by default, Redis when a URL is given."""

from __future__ import annotations

import time
from collections.abc import Callable

from server.limits.base import Limiter
from server.limits.in_process import MemoryLimiter


def build_limiter(
    redis_url: str | None,
    *,
    fail_open: bool = True,
    prefix: str = "tokenwire:rl:",
    clock: Callable[[], float] = time.time,
) -> Limiter:
    """Connecting is lazy: an unreachable Redis shows up per request, as fail open/closed."""
    if not redis_url:
        return MemoryLimiter(clock)
    # Imported only when configured: the redis client is ~9 MiB in each worker.
    from server.limits.redis_limiter import RedisLimiter

    return RedisLimiter.from_url(redis_url, fail_open=fail_open, prefix=prefix, clock=clock)
