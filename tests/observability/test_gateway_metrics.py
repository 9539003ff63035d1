"""A gateway running on its own (`tokenwire gateway`) serves `/metrics` with its HTTP series:
requests by method, route template and status, their duration, those in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from server.providers.base import Delta, Usage
from server.providers.fake import FakeConfig, FakeProvider
from server.runtime import app
from server.runtime.config import Config
from tests.conftest import StartService, user_turn
from tests.observability.scrape import scrape, value, whole_and_streamed
from tests.routing.test_fallback import eventually

DURATION = "http_server_request_duration_seconds_count"
CHAT = "/v1/chat/completions"


async def standalone(service: app.Service, **settings: object) -> app.Service:
    target = f"127.0.0.1:{service.grpc_port}"
    return await app.start_gateway(
        Config(host="127.0.0.1", http_port=0, grpc_target=target, **settings)  # type: ignore[arg-type]
    )


Running = tuple[app.Service, FakeConfig]


@pytest.fixture
async def gateway_over(start_service: StartService) -> AsyncIterator[Running]:
    fake = FakeConfig(script=(Delta(content="hi"), Usage(1, 1)))
    service = await start_service([FakeProvider(fake)])
    gateway = await standalone(service)
    try:
        yield gateway, fake
    finally:
        await gateway.stop()


async def counted(gateway: app.Service, name: str, expected: float, **labels: str) -> bool:
    return value(await scrape(gateway.http_port), name, **labels) == expected


def client(gateway: app.Service) -> openai.AsyncOpenAI:
    base = f"http://127.0.0.1:{gateway.http_port}/v1"
    return openai.AsyncOpenAI(base_url=base, api_key="unused", max_retries=0)


async def test_requests_are_counted_by_route_template_and_status(
    gateway_over: Running,
) -> None:
    gateway, _ = gateway_over
    async with client(gateway) as sdk:
        await whole_and_streamed(sdk)
        await sdk.models.retrieve("fake-echo")
        with pytest.raises(openai.NotFoundError):
            await sdk.models.retrieve("no/such-model")
    async with httpx.AsyncClient() as http:
        unknown = await http.get(f"http://127.0.0.1:{gateway.http_port}/secret/path/123")
        assert unknown.status_code == 404
    post = {"http_request_method": "POST", "http_route": CHAT}
    # a stream is recorded once its handler returns, which may be just after the client saw
    # its end
    await eventually(lambda: counted(gateway, DURATION, 2, http_response_status_code="200", **post))
    samples = await scrape(gateway.http_port)
    model = {"http_request_method": "GET", "http_route": "/v1/models/{model=**}"}
    assert value(samples, DURATION, http_response_status_code="200", **model) == 1
    assert value(samples, DURATION, http_response_status_code="404", **model) == 1
    assert value(samples, DURATION, http_route="_OTHER", http_response_status_code="404") == 1
    assert 0 < value(samples, "http_server_request_duration_seconds_sum", **post) < 30
    routes = {s.labels.get("http_route") for s in samples}
    assert not any("no/such" in str(r) or "secret" in str(r) for r in routes)
    # the gateway is not the chat server: it has no GenAI series of its own
    assert value(samples, "gen_ai_server_request_duration_seconds_count") == 0


async def test_requests_in_flight_are_counted(
    gateway_over: Running,
) -> None:
    gateway, fake = gateway_over
    fake.gate, fake.gate_at = asyncio.Event(), 1  # the stream holds after its first event
    async with client(gateway) as sdk:
        stream = await sdk.chat.completions.create(
            model="fake-echo", messages=user_turn("hi"), stream=True
        )
        await anext(aiter(stream))
        samples = await scrape(gateway.http_port)
        fake.gate.set()
        async for _ in stream:
            pass
    # the stream, and the scrape itself; then the scrape alone
    assert value(samples, "http_server_active_requests") == 2
    await eventually(lambda: counted(gateway, "http_server_active_requests", 1))


async def test_metrics_off_serves_no_route(start_service: StartService) -> None:
    service = await start_service([FakeProvider()])
    gateway = await standalone(service, metrics=False)
    try:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{gateway.http_port}/metrics")
        assert answer.status_code == 404
    finally:
        await gateway.stop()
