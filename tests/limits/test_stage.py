"""`LimitStage`: anonymous IPs, keys and organizations; headers, 429 and tokens after the call."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from server.errors import RateLimited
from server.limits.base import Check, Limiter, Rate
from server.limits.stage import LimitsConfig, LimitStage
from server.pipeline.context import Principal
from tests.limits.clock import Clock
from tests.usage.factories import context, record

KEYED = Principal(key_id="key_1", organization_id="acme")


class Quotas:
    def __init__(self, *checks: Check) -> None:
        self._checks = checks

    async def checks(self, principal: Principal) -> Sequence[Check]:
        return self._checks if principal.key_id else ()


async def test_anonymous_ips_get_60_requests_an_hour(limiter: Limiter, clock: Clock) -> None:
    stage = LimitStage(limiter)
    for _ in range(60):
        await stage.before(context(peer="10.0.0.9"))
    ctx = context(peer="10.0.0.9")
    with pytest.raises(RateLimited) as caught:
        await stage.before(ctx)
    assert caught.value.retry_after == 3600
    assert "your IP address" in caught.value.message
    assert ctx.headers["x-ratelimit-limit-requests"] == "60"
    assert ctx.headers["x-ratelimit-remaining-requests"] == "0"
    assert ctx.headers["x-ratelimit-reset-requests"] == "1h0m0s"
    await stage.before(context(peer="10.0.0.10"))  # another IP is not affected
    await stage.before(context(peer="10.0.0.9", principal=KEYED))  # nor a keyed caller
    clock.advance(3600)
    await stage.before(context(peer="10.0.0.9"))


async def test_key_limits_answer_429_with_headers(limiter: Limiter) -> None:
    stage = LimitStage(limiter, Quotas(Check("key:key_1", "this API key", Rate(requests=2))))
    first = context(principal=KEYED)
    await stage.before(first)
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    await stage.before(context(principal=KEYED))
    with pytest.raises(RateLimited) as caught:
        await stage.before(context(principal=KEYED))
    assert caught.value.http_status == 429
    assert caught.value.metadata["retry_after"] == "60"
    assert caught.value.message.startswith("Rate limit reached for requests on this API key")


async def test_tokens_are_counted_after_the_call(limiter: Limiter) -> None:
    org = Check("org:acme", "your organization", Rate(tokens=10, window=60))
    stage = LimitStage(limiter, Quotas(org))
    ctx = context(principal=KEYED)
    await stage.before(ctx)
    assert ctx.headers["x-ratelimit-remaining-tokens"] == "10"
    await stage.after(ctx, record(prompt_tokens=4, completion_tokens=6))
    refused = context(principal=KEYED)
    with pytest.raises(RateLimited) as caught:
        await stage.before(refused)
    assert "tokens on your organization" in caught.value.message
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"


async def test_a_per_ip_limit_for_everyone_and_none_for_anonymous(limiter: Limiter) -> None:
    config = LimitsConfig(anonymous_ip=None, every_ip=Rate(requests=1, window=60))
    stage = LimitStage(limiter, config=config)
    await stage.before(context(principal=KEYED))
    with pytest.raises(RateLimited):
        await stage.before(context(principal=KEYED))


async def test_no_limits_means_no_headers(limiter: Limiter) -> None:
    stage = LimitStage(limiter, config=LimitsConfig(anonymous_ip=None))
    ctx = context()
    await stage.before(ctx)
    assert ctx.headers == {}
