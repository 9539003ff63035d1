"""One record's bad values never cost another record: values are bounded on the way in, and a
failed multi-row INSERT is narrowed down to the row at fault (SQLite and real PostgreSQL)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from server.keys.records import KeySpec
from server.storage.database import Database
from server.usage.query import UsageFilter
from server.usage.store import UsageStore
from tests.keys.harness import Served, bearer
from tests.usage.factories import record
from tests.usage.test_chat_e2e import ask

BAD = {
    "user": "ev\x00il",
    "session_id": "s\x00" * 100,
    "model_requested": "m\x00" + "m" * 10_000,
    "request_id": "r" * 8_000,
    "organization_id": "o\x00rg",
    "prompt_tokens": 2**40,
    "cost_usd": float("nan"),
    "latency_ms": float("inf"),
}


async def test_bad_values_are_bounded_and_their_neighbours_kept(usage: UsageStore) -> None:
    good = [record(request_id=f"req_{i}", user="alice") for i in range(57)]
    bad = [record(**{name: value}) for name, value in list(BAD.items())[:3]]
    bad += [record(**dict(BAD))]
    for r in [*good[:20], *bad, *good[20:]]:
        await usage.record(r)
    stored = await usage.records(UsageFilter(), 100)
    assert len(stored) == 61
    assert [r for r in stored if r.user == "alice"] == good
    (worst,) = [r for r in stored if r.organization_id == "org"]  # every bad value at once
    assert worst.user == "evil" and worst.organization_id == "org"
    assert worst.session_id == "s" * 64 and len(worst.model_requested) <= 256
    assert len(worst.request_id) <= 128 and worst.prompt_tokens == 2**31 - 1
    assert worst.cost_usd == 0.0 and worst.latency_ms == 0.0


async def test_a_row_the_database_refuses_costs_only_itself(
    usage: UsageStore, database: Database
) -> None:
    """A row no bounding can save (here NULL in a NOT NULL column) is lost alone."""
    broken = replace(record(), model_requested=None)
    rows = [record(request_id=f"req_{i}") for i in range(40)]
    for r in [*rows[:10], broken, *rows[10:]]:
        await usage.record(r)
    assert await usage.records(UsageFilter(), 100) == rows


async def test_keyless_requests_with_huge_ids_cost_no_one_their_records(
    served: Served, database: Database, tmp_path: Path
) -> None:
    """The issue's reproduction over real gRPC: 300 requests of a key and 10 without one,
    whose x-request-id (7,000 characters) and user (NUL) could not be stored as sent."""
    issued = await served.store.create(KeySpec("acme"), create_organization=True)
    chat = served.chat()
    huge = (("x-request-id", "r" * 7_000),)

    async def keyed() -> None:
        await chat.CreateChatCompletion(ask(), metadata=bearer(issued.secret))

    async def keyless() -> None:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await chat.CreateChatCompletion(ask(), metadata=huge)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    async def evil() -> None:
        request = ask()
        request.user = "ev\x00il"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await chat.CreateChatCompletion(request, metadata=bearer(issued.secret))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    calls = [keyed() for _ in range(300)]
    for i in range(10):
        calls.insert(i * 30, keyless())
        calls.insert(i * 30 + 15, evil())
    await asyncio.gather(*calls)
    records = await served.usage.records(UsageFilter(), 1000)
    statuses = sorted(r.http_status for r in records)
    assert statuses == [200] * 300 + [400] * 10 + [401] * 10
    assert max(len(r.request_id) for r in records) <= 128
    assert {r.user for r in records if r.http_status == 400} == {"evil"}
