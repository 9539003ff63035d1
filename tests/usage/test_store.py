"""The usage store on SQLite and the real PostgreSQL: every field kept, aggregates, CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

from server.pipeline.context import Attempt
from server.usage.csv_export import to_csv
from server.usage.query import Dimension, UsageFilter
from server.usage.rows import FIELDS
from server.usage.store import UsageStore
from tests.usage.factories import record

FULL = record(
    request_id="req_full",
    created=1_000_123.25,
    key_id="key_a",
    organization_id="acme",
    session_id="s-1",
    user="alice",
    model_requested="auto",
    model="fake-echo",
    provider="fake",
    attempts=(
        Attempt("up", "m", "error", 3.5, error="provider_unavailable"),
        Attempt("fake", "fake-echo", "ok", 12.25, prompt_tokens=3, completion_tokens=4),
    ),
    prompt_tokens=3,
    completion_tokens=4,
    cached_tokens=1,
    estimated=True,
    cost_usd=0.0123,
    latency_ms=20.5,
    ttft_ms=None,
    status="ok",
    http_status=200,
    streamed=True,
    cancelled=False,
    template="greet",
    template_version=3,
    memory_ids=("m1", "m2"),
)


async def test_every_field_round_trips(usage: UsageStore) -> None:
    await usage.record(FULL)
    await usage.record(FULL)  # a reused request id is a second record, not an error
    assert await usage.records(UsageFilter(), 10) == [FULL, FULL]


async def test_a_burst_is_written_whole_and_in_order(usage: UsageStore) -> None:
    burst = [replace(FULL, request_id=f"req_{i}") for i in range(71)]  # one batch, 3 INSERTs
    for r in burst:
        await usage.record(r)
    assert await usage.records(UsageFilter(), 100) == burst


async def seed(usage: UsageStore) -> None:
    rows = [
        ("acme", "key_a", "s-1", "fake-echo", 1_000_800.0, 200, 0.01),
        ("acme", "key_a", "s-1", "fake-echo", 1_000_900.0, 200, 0.02),
        ("acme", "key_b", "s-2", "other", 1_004_400.0, 429, 0.0),
        ("globex", "key_c", None, "fake-echo", 1_090_000.0, 200, 0.5),
    ]
    for i, (org, key, session, model, created, status, cost) in enumerate(rows):
        await usage.record(
            record(
                request_id=f"req_{i}",
                organization_id=org,
                key_id=key,
                session_id=session,
                model=model,
                created=created,
                http_status=status,
                status="ok" if status == 200 else "rate_limit_exceeded",
                cost_usd=cost,
            )
        )
    cancelled = record(request_id="req_x", model=None, model_requested="gone", cancelled=True)
    await usage.record(replace(cancelled, http_status=499, status="cancelled", created=1_090_001.0))


async def test_grouped_by_organization_and_key(usage: UsageStore) -> None:
    await seed(usage)
    buckets = await usage.aggregate(UsageFilter(), [Dimension.ORGANIZATION, Dimension.KEY])
    summary = [
        (b.dimensions[Dimension.ORGANIZATION], b.dimensions[Dimension.KEY], b.requests, b.errors)
        for b in buckets
    ]
    assert summary == [
        (None, None, 1, 0),  # cancelled: not an error
        ("acme", "key_a", 2, 0),
        ("acme", "key_b", 1, 1),
        ("globex", "key_c", 1, 0),
    ]
    first = buckets[1]
    assert (first.prompt_tokens, first.completion_tokens) == (6, 8)
    assert round(first.cost_usd, 6) == 0.03 and first.mean_latency_ms == 20.0
    assert first.mean_ttft_ms == 5.0


async def test_model_falls_back_to_the_model_asked_for(usage: UsageStore) -> None:
    await seed(usage)
    buckets = await usage.aggregate(UsageFilter(), [Dimension.MODEL])
    assert [(b.dimensions[Dimension.MODEL], b.requests) for b in buckets] == [
        ("fake-echo", 3),
        ("gone", 1),
        ("other", 1),
    ]
    assert (await usage.total(UsageFilter(model="gone"))).cancelled == 1


async def test_filters_and_time_range(usage: UsageStore) -> None:
    await seed(usage)
    acme = UsageFilter(organization_id="acme", start=1_000_800.0, end=1_004_400.0)
    total = await usage.total(acme)
    assert total.requests == 2 and round(total.cost_usd, 6) == 0.03
    assert (await usage.total(UsageFilter(session_id="s-2"))).requests == 1
    assert (await usage.total(UsageFilter(key_id="key_c", user="nobody"))).requests == 0
    empty = await usage.total(UsageFilter(organization_id="nobody"))
    assert (empty.requests, empty.cost_usd, empty.mean_ttft_ms) == (0, 0.0, None)


async def test_hour_and_day_buckets(usage: UsageStore) -> None:
    await seed(usage)
    hours = await usage.aggregate(UsageFilter(organization_id="acme"), [Dimension.HOUR])
    assert [(b.dimensions[Dimension.HOUR], b.requests) for b in hours] == [
        (1_000_800, 2),
        (1_004_400, 1),
    ]
    days = await usage.aggregate(UsageFilter(), [Dimension.DAY, Dimension.STATUS])
    assert [(b.dimensions[Dimension.DAY], b.dimensions[Dimension.STATUS]) for b in days] == [
        (950_400, "ok"),
        (950_400, "rate_limit_exceeded"),
        (1_036_800, "cancelled"),
        (1_036_800, "ok"),
    ]


async def test_budget_queries(usage: UsageStore) -> None:
    await seed(usage)
    assert round(await usage.cost(UsageFilter(key_id="key_a")), 6) == 0.03
    month = UsageFilter(organization_id="globex", start=1_080_000.0)
    assert await usage.cost(month) == 0.5


async def test_csv_has_every_field(usage: UsageStore) -> None:
    hostile = record(request_id="req_2", created=2e6, user='=HYPERLINK("x")', session_id='a,"b"\nc')
    await usage.record(FULL)
    await usage.record(hostile)
    text = to_csv(await usage.records(UsageFilter(), 10))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(FIELDS) and len(rows) == 2
    assert rows[0]["attempts"].startswith('[{"provider": "up"')
    assert rows[0]["memory_ids"] == '["m1", "m2"]' and rows[0]["ttft_ms"] == ""
    assert rows[0]["streamed"] == "true" and rows[0]["created"] == "1000123.25"
    assert rows[1]["user"] == '\'=HYPERLINK("x")' and rows[1]["session_id"] == 'a,"b"\nc'


async def test_oversized_tags_of_refused_requests_are_bounded(usage: UsageStore) -> None:
    await usage.record(record(session_id="s" * 5000, user="u" * 5000, http_status=400))
    (stored,) = await usage.records(UsageFilter(), 10)
    assert len(stored.session_id or "") == 128 and len(stored.user or "") == 256
