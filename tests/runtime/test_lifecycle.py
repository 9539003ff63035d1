"""Start-up and shutdown: SIGTERM drains in-flight streams within the grace period."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.providers.fake import FakeConfig, FakeProvider
from server.runtime import app
from server.runtime.config import Config
from tests.conftest import StartService
from tests.routing.test_fallback import eventually
from tests.routing.upstream_server import Reply, Upstream, openai_text
from tests.serving import run_to_exit, serving
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2

BODY = {"model": "fake-echo", "messages": [{"role": "user", "content": "a b c"}], "stream": True}


async def test_stop_lets_an_in_flight_stream_finish(start_service: StartService) -> None:
    gate = asyncio.Event()
    service = await start_service([FakeProvider(FakeConfig(gate=gate))])
    base = f"http://127.0.0.1:{service.http_port}"
    async with (
        httpx.AsyncClient(base_url=base) as http,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel,
        http.stream("POST", "/v1/chat/completions", json=BODY) as response,
    ):
        lines = response.aiter_lines()
        assert (await anext(lines)).startswith("data: {")
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await anext(aiter(watch))).status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.ensure_future(service.stop())
        update = await asyncio.wait_for(anext(aiter(watch)), timeout=10)
        assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
        gate.set()  # the provider goes on: the stream must still end cleanly
        rest = [line async for line in lines if line.startswith("data:")]
    assert rest[-1] == "data: [DONE]"
    await asyncio.wait_for(stopping, timeout=10)


async def test_sigterm_mid_load_keeps_every_answered_requests_usage(tmp_path: Path) -> None:
    """Stopped while requests pour in: every request that got its answer has its record.

    (Requests still in flight when the grace period runs out may be missing.)
    """
    db = tmp_path / "tokenwire.db"
    body = {**BODY, "stream": False}
    answered: list[int] = []

    async def client(url: str, http: httpx.AsyncClient) -> None:
        for _ in range(200):  # bounded; ends when the server stops answering
            try:
                response = await http.post(url, json=body)
            except httpx.HTTPError:
                return
            if response.status_code != 200:
                return
            answered.append(1)

    async with serving(f"sqlite://{db}") as served, httpx.AsyncClient() as http:
        url = f"http://127.0.0.1:{served.http_port}/v1/chat/completions"
        load = [asyncio.ensure_future(client(url, http)) for _ in range(4)]
        while len(answered) < 20 and not all(t.done() for t in load):
            await asyncio.sleep(0.005)  # polling the load's progress, bounded by the load
        served.process.send_signal(signal.SIGTERM)
        await asyncio.gather(*load)
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT count(*) FROM usage_records").fetchone()
    assert len(answered) >= 20
    assert count >= len(answered)


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_refuses_a_public_address_without_keys(tmp_path: Path, workers: str) -> None:
    database = f"sqlite://{tmp_path / 'x.db'}"
    status, err = await run_to_exit(
        database, "--provider", "fake", "--host", "0.0.0.0", "--workers", workers
    )
    assert status != 0
    assert err.count(b"without API keys") == 1  # said once, by the supervisor with workers


async def test_cli_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    async with (
        serving(f"sqlite://{tmp_path / 'tokenwire.db'}") as served,
        httpx.AsyncClient() as http,
    ):
        models = await http.get(f"http://127.0.0.1:{served.http_port}/v1/models")
    assert models.json()["data"][0]["id"] == "fake-echo"


async def test_sigterm_past_the_grace_period_ends_streams_with_an_error(tmp_path: Path) -> None:
    """Streams longer than --grace end with an error saying why: an SSE error event, and
    UNAVAILABLE over gRPC, instead of just stopping."""
    never = asyncio.Event()  # the upstream sends one event, then nothing until the client leaves
    async with Upstream(Reply(events=openai_text("never", "ends"), hold=never, hold_at=2)) as up:
        config = tmp_path / "tokenwire.toml"
        config.write_text(
            f'[providers.up]\nbase_url = "{up.url}"\n\n'
            '[[models]]\nid = "slow"\nprovider = "up"\nupstream = "x"\n'
        )
        database = f"sqlite://{tmp_path / 'tokenwire.db'}"
        async with (
            serving(database, "--config", str(config), "--grace", "0.5") as served,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.http_port}") as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel,
            http.stream("POST", "/v1/chat/completions", json={**BODY, "model": "slow"}) as sse,
        ):
            lines = sse.aiter_lines()
            assert (await anext(lines)).startswith("data: {")
            ask = message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="hi")
            request = chat_pb2.CreateChatCompletionRequest(model="slow", messages=[ask])
            stream = chat_pb2_grpc.ChatServiceStub(channel).StreamChatCompletion(
                chat_pb2.StreamChatCompletionRequest(request=request)
            )
            chunks = aiter(stream)
            await anext(chunks)
            os.kill(served.process.pid, signal.SIGTERM)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await asyncio.wait_for(anext(chunks), timeout=10)
            rest = await asyncio.wait_for(_data_lines(lines), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (caught.value.details() or "")
    error = json.loads(rest[-1].removeprefix("data: "))["error"]
    assert error["code"] == "server_shutting_down" and "shutting down" in error["message"]
    assert "[DONE]" not in rest[-1]


async def _data_lines(lines: AsyncIterator[str]) -> list[str]:
    return [line async for line in lines if line.startswith("data:")]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "unary"])
async def test_a_call_with_no_output_when_the_grace_period_ends_is_a_json_503(stream: bool) -> None:
    """Cut off before its first byte, a call has sent nothing yet: a whole OpenAI-shaped 503
    (uvicorn's own answer would be a plain-text 500)."""
    provider = FakeProvider(FakeConfig(gate=asyncio.Event(), gate_at=0))
    config = Config(
        host="127.0.0.1", http_port=0, grpc_port=0, grace=0.3, database_url="sqlite://:memory:"
    )
    service = await app.start(config, [provider])
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as http:
            body = {**BODY, "stream": stream}
            answer = asyncio.ensure_future(http.post("/v1/chat/completions", json=body))
            await eventually(lambda: bool(provider.config.seen))
            await asyncio.wait_for(service.stop(), timeout=10)
            response = await asyncio.wait_for(answer, timeout=10)
    finally:
        if not service.http_task.done():
            await service.stop()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "server_shutting_down"
