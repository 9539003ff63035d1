"""Redis out of reach: fail open or fail closed as configured, never a crash, no retry storm."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from server.errors import TokenwireError
from server.limits.base import Check, LimiterUnavailable, Rate
from server.limits.redis_limiter import RedisLimiter
from server.limits.stage import LimitStage
from tests.limits.clock import Clock
from tests.usage.factories import context, record

CHECK = Check("key:k", "this API key", Rate(requests=1, tokens=10, window=60))


def closed_port() -> int:
    """A port nothing listens on: bound by the OS, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class DownRedis:
    """A client whose every command fails as an unreachable server's would."""

    def __init__(self) -> None:
        self.calls = 0

    def register_script(self, script: str) -> Any:
        async def run(**_: Any) -> Any:
            self.calls += 1
            raise RedisConnectionError("Connection refused")

        return run

    def pipeline(self, transaction: bool = True) -> Any:
        self.calls += 1
        raise RedisConnectionError("Connection refused")

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("fail_open", [True, False])
async def test_unreachable_redis_fails_as_configured(fail_open: bool) -> None:
    limiter = RedisLimiter.from_url(f"redis://127.0.0.1:{closed_port()}/0", fail_open=fail_open)
    try:
        if fail_open:
            verdict = await limiter.acquire([CHECK])
            assert verdict.allowed and verdict.degraded and not verdict.states
        else:
            with pytest.raises(LimiterUnavailable) as caught:
                await limiter.acquire([CHECK])
            assert caught.value.http_status == 503
        await limiter.spend([CHECK], 5)  # accounting after the call never raises
    finally:
        await limiter.aclose()


async def test_after_a_failure_redis_is_left_alone_for_a_while() -> None:
    clock, client = Clock(), DownRedis()
    limiter = RedisLimiter(client, fail_open=True, retry_interval=5, clock=clock)  # type: ignore[arg-type]
    for _ in range(3):
        assert (await limiter.acquire([CHECK])).degraded
    await limiter.spend([CHECK], 5)
    assert client.calls == 1
    clock.advance(5)
    await limiter.acquire([CHECK])
    assert client.calls == 2


async def test_the_stage_turns_fail_closed_into_a_503_and_never_raises_after() -> None:
    client = DownRedis()
    limiter = RedisLimiter(client, fail_open=False, clock=Clock())  # type: ignore[arg-type]
    stage = LimitStage(limiter)
    ctx = context()
    with pytest.raises(TokenwireError) as caught:
        await stage.before(ctx)
    assert caught.value.http_status == 503
    assert caught.value.code == "rate_limiter_unavailable"
    await stage.after(ctx, record(prompt_tokens=5))
