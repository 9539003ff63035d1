"""PostgreSQL going away mid-run: requests that need it get a 503 saying so, the others are
answered, and every request's usage reaches the database once it is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import pytest

from server.keys.records import KeySpec
from server.keys.store import KeyStore
from server.providers.fake import FakeProvider
from server.runtime import app
from server.runtime.config import Config
from server.storage.database import open_database
from tests.backends import postgres_schema
from tests.keys.harness import bearer
from tests.storage.outage import Relay, relayed
from tests.usage.test_chat_e2e import ask
from tests.usage.test_durability import count_records
from tokenwire.chat.v1 import chat_pb2_grpc

ADMIN = "admin-token-0123456789"
ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN}"}
BODY = {"model": "fake-echo", "messages": [{"role": "user", "content": "a b c"}]}
CHAT = "/v1/chat/completions"


async def wait_for_records(url: str, expected: int) -> int:
    """The record count once it reaches `expected` (the writer retries on its own schedule)."""
    count = 0
    for _ in range(400):  # bounded: about 20 s
        count = await count_records(url)
        if count >= expected:
            break
        await asyncio.sleep(0.05)
    return count


@asynccontextmanager
async def served_through_relay(tmp_path: Path) -> AsyncIterator[tuple[app.Service, Relay, str]]:
    """tokenwire on a fresh PostgreSQL schema reached through a relay; and the direct URL."""
    async with postgres_schema() as url, relayed(url) as (through_relay, relay):
        config = Config(
            host="127.0.0.1",
            http_port=0,
            grpc_port=0,
            grace=1.0,
            retries=0,
            admin_token=ADMIN,
            database_url=through_relay,
            data_dir=str(tmp_path),
        )
        service = await app.start(config, [FakeProvider()])
        try:
            yield service, relay, url
        finally:
            await service.stop()


def assert_storage_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "storage_unavailable"


async def test_an_outage_is_503_where_needed_and_loses_no_usage(tmp_path: Path) -> None:
    async with served_through_relay(tmp_path) as (service, relay, url):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as http:
            before = [await http.post(CHAT, json=BODY) for _ in range(10)]
            relay.cut()
            during = [await http.post(CHAT, json=BODY) for _ in range(10)]
            org = {"organization_id": "acme"}
            templated = await http.post(CHAT, json={**BODY, "template": "greet"}, headers=org)
            usage = await http.get("/v1/usage", headers=ADMIN_HEADERS)
            relay.restore()
            stored = await wait_for_records(url, 21)
            after = await http.get("/v1/usage", headers=ADMIN_HEADERS)
        assert [r.status_code for r in before + during] == [200] * 20  # no database needed
        assert_storage_unavailable(templated)  # these need it
        assert_storage_unavailable(usage)
        assert stored == 21  # the refused chat request has its record too
        assert after.status_code == 200 and after.json()["total"]["requests"] == 21
        assert await count_records(url) == 21  # and nothing twice
    assert not list(tmp_path.rglob("*.jsonl"))


async def test_a_keyed_request_in_an_outage_is_503_on_both_transports(tmp_path: Path) -> None:
    async with served_through_relay(tmp_path) as (service, relay, url):
        direct = await open_database(url)
        try:
            issued = await KeyStore(direct).create(KeySpec("acme"), create_organization=True)
        finally:
            await direct.close()
        headers = {"authorization": f"Bearer {issued.secret}"}
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel,
        ):
            assert (await http.post(CHAT, json=BODY, headers=headers)).status_code == 200
            relay.cut()
            rest = await http.post(CHAT, json=BODY, headers=headers)
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CreateChatCompletion(ask(), metadata=bearer(issued.secret))
            relay.restore()
            assert await wait_for_records(url, 3) == 3
        assert_storage_unavailable(rest)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "database is unavailable" in (refused.value.details() or "")
