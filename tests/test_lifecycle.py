"""Start-up and shutdown: SIGTERM drains in-flight streams within the grace period."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.providers.fake import FakeConfig, FakeProvider
from tests.conftest import StartService
from tests.serving import run_to_exit, serving

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
