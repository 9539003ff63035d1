"""Both limiters, on a hand-moved clock: in-process, and real Redis under a unique prefix."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from server.limits.base import Limiter
from server.limits.in_process import MemoryLimiter
from server.limits.redis_limiter import RedisLimiter
from tests.backends import REDIS_URL, require
from tests.limits.clock import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def redis_prefix() -> str:
    return f"tokenwire-test:{uuid.uuid4().hex}:"


async def delete_prefix(prefix: str) -> None:
    """Deletes every Redis key a test wrote under its prefix."""
    client = aioredis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def limiter(
    request: pytest.FixtureRequest, clock: Clock, redis_prefix: str
) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter(clock)
        return
    require(REDIS_URL)
    redis_limiter = RedisLimiter.from_url(
        REDIS_URL, prefix=redis_prefix, fail_open=False, clock=clock
    )
    yield redis_limiter
    await redis_limiter.aclose()
    await delete_prefix(redis_prefix)
