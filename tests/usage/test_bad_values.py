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
    broken = replace(record(), model_requested=None)  # type: ignore[arg-type]
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


async def stored_bytes(database: Database) -> int:
    """What the usage table takes on disk (SQLite: the whole file, WAL included)."""
    if database.dialect == "sqlite":
        row = await database.fetchrow("PRAGMA page_count")
        assert row is not None
        return int(next(iter(row.values()))) * 4096
    row = await database.fetchrow("SELECT pg_total_relation_size('usage_records') AS size")
    assert row is not None
    return int(row["size"])


async def test_refused_requests_store_only_bounded_fields(
    served: Served, database: Database
) -> None:
    """20 keyless requests, each with a 7,000-character x-request-id and a 1 MiB model name,
    add a few KiB each, not megabytes (they added 244 MiB)."""
    await served.usage.flush()
    before = await stored_bytes(database)
    metadata = (("x-request-id", "r" * 7_000),)
    for _ in range(20):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await served.chat().CreateChatCompletion(ask("m" * 2**20), metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    records = await served.usage.records(UsageFilter(), 100)
    grown = await stored_bytes(database) - before
    assert len(records) == 20 and grown <= 20 * 8192  # a page each at most
    assert {len(r.model_requested) for r in records} == {256}
    assert all(r.request_id.startswith("req_") and len(r.request_id) == 36 for r in records)


@pytest.mark.parametrize(
    ("asked", "kept"),
    [("abc-123_X.y", True), ("r" * 128, True), ("r" * 129, False), ("a b", False), ("", False)],
)
async def test_a_client_request_id_names_the_completion_only_when_short_and_plain(
    served: Served, asked: str, kept: bool
) -> None:
    issued = await served.store.create(KeySpec("acme"), create_organization=True)
    metadata = (*bearer(issued.secret), ("x-request-id", asked))
    response = await served.chat().CreateChatCompletion(ask(), metadata=metadata)
    (stored,) = await served.usage.records(UsageFilter(), 10)
    assert (response.id == f"chatcmpl-{asked}") is kept
    assert len(response.id) <= len("chatcmpl-") + 128
    assert (stored.request_id == asked) is kept
