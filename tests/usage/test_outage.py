"""PostgreSQL going away mid-run: requests that need it get a 503 saying so, the others are
answered, and every request's usage reaches the database once it is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from server import app
from server.config import Config
from server.providers.fake import FakeProvider
from tests.backends import postgres_schema
from tests.storage.outage import relayed
from tests.usage.test_durability import count_records

ADMIN = "admin-token-0123456789"
BODY = {"model": "fake-echo", "messages": [{"role": "user", "content": "a b c"}]}


async def wait_for_records(url: str, expected: int) -> int:
    """The record count once it reaches `expected` (the writer retries on its own schedule)."""
    count = 0
    for _ in range(400):  # bounded: about 20 s
        count = await count_records(url)
        if count >= expected:
            break
        await asyncio.sleep(0.05)
    return count


async def test_an_outage_is_503_where_needed_and_loses_no_usage(tmp_path: Path) -> None:
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
        base = f"http://127.0.0.1:{service.http_port}"
        try:
            async with httpx.AsyncClient(base_url=base) as http:
                chat = "/v1/chat/completions"
                before = [await http.post(chat, json=BODY) for _ in range(10)]
                relay.cut()
                during = [await http.post(chat, json=BODY) for _ in range(10)]
                templated = await http.post(
                    chat, json={**BODY, "template": "greet"}, headers={"organization_id": "acme"}
                )
                usage = await http.get("/v1/usage", headers={"authorization": f"Bearer {ADMIN}"})
                relay.restore()
                stored = await wait_for_records(url, 21)
                after = await http.get("/v1/usage", headers={"authorization": f"Bearer {ADMIN}"})
        finally:
            await service.stop()
        assert [r.status_code for r in before + during] == [200] * 20  # no database needed
        for refused in (templated, usage):  # these need it
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "storage_unavailable"
        assert stored == 21  # the refused chat request has its record too
        assert after.status_code == 200 and after.json()["total"]["requests"] == 21
        assert await count_records(url) == 21  # and nothing twice
    assert not list(tmp_path.rglob("*.jsonl"))
