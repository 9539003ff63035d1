"""`GET /healthz` and `GET /readyz`: readiness flips when PostgreSQL or Redis stops
answering and back, through a TCP relay the test cuts (the shared servers keep running)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse, urlunparse

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.providers.fake import FakeProvider
from server.runtime import app
from server.runtime.config import Config
from tests.backends import REDIS_URL, postgres_schema, require
from tests.conftest import StartService
from tests.providers.http.raw_server import refused_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Relay:
    """A TCP relay on 127.0.0.1 to `target`: `cut()` closes it and every connection (the
    port then refuses), `restore()` listens on the same port again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._pipes:
            writer.close()
        self._pipes.clear()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._pipes |= {writer, up_writer}
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

    def url(self, url: str) -> str:
        parsed = urlparse(url)
        netloc = f"{parsed.username + '@' if parsed.username else ''}127.0.0.1:{self.port}"
        return urlunparse(parsed._replace(netloc=netloc))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def relay_to(url: str) -> AsyncIterator[Relay]:
    parsed = urlparse(url)
    assert parsed.hostname is not None and parsed.port is not None
    relay = Relay(parsed.hostname, parsed.port)
    await relay.restore()
    try:
        yield relay
    finally:
        with contextlib.suppress(AssertionError):
            await relay.cut()


async def get(port: int, path: str) -> tuple[int, Any]:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"http://127.0.0.1:{port}{path}")
    assert answer.headers["content-type"] == "application/json"
    return answer.status_code, answer.json()


async def test_healthz_and_readyz_answer_when_all_is_well(start_service: StartService) -> None:
    service = await start_service([FakeProvider()])
    assert await get(service.http_port, "/healthz") == (200, {"status": "ok"})
    status, body = await get(service.http_port, "/readyz")
    assert status == 200
    assert body == {"status": "ready", "checks": {"database": "ok", "models": "ok"}}


async def test_readyz_names_an_unreachable_redis(start_service: StartService) -> None:
    url = f"redis://127.0.0.1:{refused_port()}/0"
    service = await start_service([FakeProvider()], redis_url=url, readiness_timeout=1.0)
    status, body = await get(service.http_port, "/readyz")
    assert status == 503 and body["status"] == "not_ready"
    assert body["checks"]["redis"] != "ok" and body["checks"]["database"] == "ok"


async def test_readyz_flips_with_redis_and_back(start_service: StartService) -> None:
    require(REDIS_URL)
    async with relay_to(REDIS_URL) as relay:
        service = await start_service([FakeProvider()], redis_url=relay.url(REDIS_URL))
        assert (await get(service.http_port, "/readyz"))[0] == 200
        await relay.cut()
        status, body = await get(service.http_port, "/readyz")
        assert status == 503 and body["checks"]["redis"] != "ok", body
        await relay.restore()
        assert await get(service.http_port, "/readyz") == (
            200,
            {"status": "ready", "checks": {"database": "ok", "redis": "ok", "models": "ok"}},
        )


async def test_readyz_flips_with_postgres_and_back(start_service: StartService) -> None:
    async with postgres_schema() as url, relay_to(url) as relay:
        service = await start_service(
            [FakeProvider()], database_url=relay.url(url), readiness_timeout=1.0
        )
        assert (await get(service.http_port, "/readyz"))[0] == 200
        await relay.cut()
        status, body = await get(service.http_port, "/readyz")
        assert status == 503 and body["checks"]["database"] != "ok", body
        await relay.restore()
        status, body = await get(service.http_port, "/readyz")
        assert status == 200, body


async def test_grpc_health_follows_readiness(start_service: StartService) -> None:
    require(REDIS_URL)
    chat = "tokenwire.chat.v1.ChatService"
    async with relay_to(REDIS_URL) as relay:
        service = await start_service(
            [FakeProvider()],
            redis_url=relay.url(REDIS_URL),
            readiness_interval=0.05,
            readiness_timeout=1.0,
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=chat)
            )
            statuses = aiter(watch)
            assert (await anext(statuses)).status == SERVING
            await relay.cut()
            assert (await anext(statuses)).status == NOT_SERVING
            await relay.restore()
            assert (await anext(statuses)).status == SERVING
            watch.cancel()


async def test_a_gateway_alone_is_ready_while_its_server_serves(
    start_service: StartService,
) -> None:
    service = await start_service([FakeProvider()])
    target = f"127.0.0.1:{service.grpc_port}"
    gateway = await app.start_gateway(Config(host="127.0.0.1", http_port=0, grpc_target=target))
    try:
        assert (await get(gateway.http_port, "/healthz"))[0] == 200
        assert await get(gateway.http_port, "/readyz") == (
            200,
            {"status": "ready", "checks": {"grpc_target": "ok"}},
        )
        await service.health.enter_graceful_shutdown()  # what a stopping server says first
        status, body = await get(gateway.http_port, "/readyz")
        assert status == 503 and body["checks"]["grpc_target"] == "NotServing: NOT_SERVING"
    finally:
        await gateway.stop()
