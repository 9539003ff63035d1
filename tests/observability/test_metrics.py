"""`GET /metrics` after real requests through the gateway, parsed as Prometheus reads it."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from server.errors import UpstreamUnavailable
from server.providers.base import Delta, Usage
from server.providers.fake import FakeConfig, FakeProvider
from server.routing.catalog import Endpoint
from server.runtime import upstreams
from server.runtime.compose import embedded_endpoints
from tests.conftest import StartService, sdk, user_turn
from tests.observability.scrape import scrape, value, whole_and_streamed
from tests.routing.upstream_server import Reply, openai_error, openai_text
from tests.routing.upstream_server import upstreams as serving

CHAT = "gen_ai_server_request_duration_seconds_count"
TOKENS = "gen_ai_client_token_usage_sum"
SCRIPT = (Delta(content="one "), Delta(content="two "), Delta(content="three"), Usage(5, 3))


async def test_requests_tokens_ttft_and_overhead_are_counted(start_service: StartService) -> None:
    service = await start_service([FakeProvider(FakeConfig(script=SCRIPT))])
    async with sdk(service) as client:
        await whole_and_streamed(client)
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="no-such-model", messages=user_turn("x"))
    samples = await scrape(service.http_port)
    served = {"gen_ai_provider_name": "fake", "gen_ai_response_model": "fake-echo"}
    assert value(samples, CHAT, gen_ai_request_model="fake-echo", error_type="", **served) == 2
    # an unknown model is counted, under a bounded label rather than the client's string
    assert value(samples, CHAT, gen_ai_request_model="_OTHER", error_type="model_not_found") == 1
    assert not any("no-such-model" in str(s.labels) for s in samples)
    assert value(samples, TOKENS, gen_ai_token_type="input", **served) == 10
    assert value(samples, TOKENS, gen_ai_token_type="output", **served) == 6
    assert value(samples, "gen_ai_server_time_to_first_token_seconds_count", **served) == 1
    assert value(samples, "gen_ai_server_time_per_output_token_seconds_count", **served) == 1
    assert value(samples, "tokenwire_overhead_seconds_count") == 3
    assert 0 < value(samples, "tokenwire_overhead_seconds_sum") < 1
    assert value(samples, "tokenwire_provider_attempts_total", outcome="ok") == 2
    assert value(samples, "tokenwire_requests_in_flight") == 0


async def test_retries_and_fallbacks_are_told_apart(start_service: StartService) -> None:
    down = UpstreamUnavailable("upstream down")
    first = FakeProvider(FakeConfig(name="first", error=down))
    second = FakeProvider(FakeConfig(name="second"))
    endpoints = [*_endpoints(first), *_endpoints(second)]
    service = await start_service([first, second], endpoints, retries=1, retry_base_delay=0.0)
    async with sdk(service) as client:
        await client.chat.completions.create(model="fake-echo", messages=user_turn("hi"))
    samples = await scrape(service.http_port)
    attempts = "tokenwire_provider_attempts_total"
    assert value(samples, attempts, gen_ai_provider_name="first", outcome="retried") == 1
    assert value(samples, attempts, gen_ai_provider_name="first", outcome="fell_back") == 1
    assert value(samples, attempts, gen_ai_provider_name="second", outcome="ok") == 1
    assert value(samples, "tokenwire_breaker_open", gen_ai_provider_name="first") == 0


async def test_metrics_off_serves_no_route(start_service: StartService) -> None:
    service = await start_service([FakeProvider()], metrics=False)
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"http://127.0.0.1:{service.http_port}/metrics")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_url"


def _endpoints(provider: FakeProvider) -> list[Endpoint]:
    return embedded_endpoints(provider, 0)


async def test_in_flight_counts_a_request_being_served(start_service: StartService) -> None:
    gate = asyncio.Event()
    service = await start_service([FakeProvider(FakeConfig(script=SCRIPT, gate=gate))])
    async with sdk(service) as client:
        stream = await client.chat.completions.create(
            model="fake-echo", messages=user_turn("hi"), stream=True
        )
        await anext(aiter(stream))  # the first chunk is out; the gate holds the second
        assert value(await scrape(service.http_port), "tokenwire_requests_in_flight") == 1
        gate.set()
        async for _ in stream:
            pass
    assert value(await scrape(service.http_port), "tokenwire_requests_in_flight") == 0


async def test_a_provider_skipped_for_its_open_breaker_is_an_attempt(
    start_service: StartService,
) -> None:
    async with serving(openai_error(503, "down"), Reply(events=openai_text("hi"))) as (a, b):
        config = upstreams.parse(
            {name: {"base_url": up.url, "api_key_env": "K"} for name, up in (("p0", a), ("p1", b))},
            [{"id": "m", "provider": name, "upstream": "up"} for name in ("p0", "p1")],
            {"K": "sk-test"},
        )
        # open after two failures, and for longer than the test runs
        service = await start_service(
            [], upstreams=config, breaker_min_requests=2, breaker_cooldown=600.0
        )
        async with sdk(service) as client:
            for _ in range(3):
                await client.chat.completions.create(model="m", messages=user_turn("hi"))
        samples = await scrape(service.http_port)
    assert len(a.requests) == 2  # the third request sent p0 nothing
    attempts = "tokenwire_provider_attempts_total"
    assert value(samples, attempts, gen_ai_provider_name="p0", outcome="fell_back") == 2
    assert value(samples, attempts, gen_ai_provider_name="p0", outcome="breaker_open") == 1
    assert value(samples, attempts, gen_ai_provider_name="p1", outcome="ok") == 3
    assert value(samples, "tokenwire_breaker_open", gen_ai_provider_name="p0") == 1
