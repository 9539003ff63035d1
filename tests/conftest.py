"""Shared fixtures: a real tokenwire (gRPC server + gateway) on ports picked by the OS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import grpc
import openai
import pytest
import uvloop
from openai.types.chat import ChatCompletionMessageParam

from server.providers.base import Provider
from server.providers.fake import FakeConfig, FakeProvider
from server.routing.catalog import Endpoint
from server.runtime import app
from server.runtime.config import Config
from server.storage.database import Database, open_database
from tests.backends import postgres_schema

StartService = Callable[..., Awaitable[app.Service]]


def pytest_configure(config: pytest.Config) -> None:
    """Tests run on the event loop production runs on: `tokenwire serve` uses uvloop.

    pytest-asyncio makes its loops with the global policy (its own loop-factory hook
    would also parametrize every test and tear down session fixtures between sync and
    async tests).
    """
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@pytest.fixture
async def start_service() -> AsyncIterator[StartService]:
    """Start tokenwire with the given providers; everything started is stopped after the test."""
    started: list[app.Service] = []

    async def start(
        providers: Sequence[Provider],
        endpoints: Sequence[Endpoint] | None = None,
        **settings: object,
    ) -> app.Service:
        # retry tests opt in; the database lives as long as the test
        settings = {"retries": 0, "database_url": "sqlite://:memory:", **settings}
        config = Config(host="127.0.0.1", http_port=0, grpc_port=0, grace=2.0, **settings)  # type: ignore[arg-type]
        service = await app.start(config, providers, endpoints)
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider(FakeConfig())


@pytest.fixture
async def service(start_service: StartService, fake: FakeProvider) -> app.Service:
    return await start_service([fake])


def user_turn(text: str) -> list[ChatCompletionMessageParam]:
    """One user message, typed as the SDK's `messages` parameter."""
    return [{"role": "user", "content": text}]


def sdk(service: app.Service) -> openai.AsyncOpenAI:
    """The official SDK pointed at the gateway, without retries so errors surface."""
    return openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{service.http_port}/v1", api_key="test-key", max_retries=0
    )


@pytest.fixture
async def client(service: app.Service) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk(service) as c:
        yield c


@pytest.fixture
async def channel(service: app.Service) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as ch:
        yield ch


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, empty database on each backend (PostgreSQL: its own schema)."""
    if request.param == "sqlite":
        db = await open_database(f"sqlite://{tmp_path / 'tokenwire.db'}")
        yield db
        await db.close()
        return
    async with postgres_schema() as url:
        db = await open_database(url)
        yield db
        await db.close()
