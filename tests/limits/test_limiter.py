"""Both limiters (in-process and real Redis) count the same way: windows, tokens, all or nothing."""

from __future__ import annotations

import asyncio

from server.limits.base import Check, Limiter, Rate
from server.limits.headers import headers
from server.limits.redis_limiter import RedisLimiter
from tests.backends import REDIS_URL, require
from tests.limits.clock import Clock
from tests.limits.conftest import delete_prefix

KEY = Check("key:k1", "this API key", Rate(requests=3, window=60))


async def test_requests_count_down_to_the_limit(limiter: Limiter) -> None:
    remaining = []
    for _ in range(3):
        verdict = await limiter.acquire([KEY])
        assert verdict.allowed
        remaining.append(verdict.states[0].remaining_requests)
    assert remaining == [2, 1, 0]
    refused = await limiter.acquire([KEY])
    assert not refused.allowed
    assert refused.blocked[0].check == KEY
    assert refused.retry_after == 60


async def test_a_new_window_starts_afresh(limiter: Limiter, clock: Clock) -> None:
    for _ in range(3):
        await limiter.acquire([KEY])
    clock.advance(45)
    refused = await limiter.acquire([KEY])
    assert not refused.allowed and refused.retry_after == 15
    clock.advance(15)
    verdict = await limiter.acquire([KEY])
    assert verdict.allowed and verdict.states[0].remaining_requests == 2


async def test_tokens_used_up_refuse_the_next_request(limiter: Limiter) -> None:
    check = Check("key:tok", "this API key", Rate(tokens=100, window=60))
    assert (await limiter.acquire([check])).allowed
    await limiter.spend([check], 60)
    verdict = await limiter.acquire([check])
    assert verdict.allowed and verdict.states[0].remaining_tokens == 40
    await limiter.spend([check], 40)
    refused = await limiter.acquire([check])
    assert not refused.allowed
    assert headers(refused)["x-ratelimit-remaining-tokens"] == "0"


async def test_a_refusal_counts_against_no_scope(limiter: Limiter) -> None:
    roomy = Check("org:acme", "your organization", Rate(requests=10, window=60))
    tight = Check("ip:10.0.0.1", "your IP address", Rate(requests=1, window=3600))
    assert (await limiter.acquire([roomy, tight])).allowed
    refused = await limiter.acquire([roomy, tight])
    assert not refused.allowed
    assert [s.check for s in refused.blocked] == [tight]
    verdict = await limiter.acquire([roomy])
    assert verdict.states[0].requests == 2  # the refused request was not counted


async def test_scopes_keep_their_own_windows(limiter: Limiter, clock: Clock) -> None:
    minute = Check("key:m", "this API key", Rate(requests=1, window=60))
    hour = Check("ip:h", "your IP address", Rate(requests=2, window=3600))
    assert (await limiter.acquire([minute, hour])).allowed
    clock.advance(60)
    assert (await limiter.acquire([minute, hour])).allowed
    clock.advance(60)
    refused = await limiter.acquire([minute, hour])
    assert [s.check for s in refused.blocked] == [hour]
    assert refused.retry_after == 3600 - 120


async def test_concurrent_requests_never_exceed_the_limit(limiter: Limiter) -> None:
    check = Check("key:busy", "this API key", Rate(requests=5, window=60))
    verdicts = await asyncio.gather(*(limiter.acquire([check]) for _ in range(20)))
    assert sum(v.allowed for v in verdicts) == 5


async def test_headers_describe_the_tightest_scope(limiter: Limiter) -> None:
    key = Check("key:h", "this API key", Rate(requests=100, tokens=1000, window=60))
    org = Check("org:h", "your organization", Rate(requests=10, window=3600))
    verdict = await limiter.acquire([key, org])
    assert headers(verdict) == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "1h0m0s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "1000",
        "x-ratelimit-reset-tokens": "1m0s",
    }


async def test_two_replicas_sharing_redis_enforce_one_limit(
    clock: Clock, redis_prefix: str
) -> None:
    require(REDIS_URL)
    replicas = [
        RedisLimiter.from_url(REDIS_URL, prefix=redis_prefix, fail_open=False, clock=clock)
        for _ in range(2)
    ]
    try:
        check = Check("key:shared", "this API key", Rate(requests=4, tokens=50, window=60))
        verdicts = await asyncio.gather(*(replicas[i % 2].acquire([check]) for i in range(10)))
        assert sum(v.allowed for v in verdicts) == 4
        clock.advance(60)
        assert (await replicas[0].acquire([check])).allowed
        await replicas[0].spend([check], 50)
        assert not (await replicas[1].acquire([check])).allowed  # tokens spent on the other one
    finally:
        for r in replicas:
            await r.aclose()
        await delete_prefix(redis_prefix)
