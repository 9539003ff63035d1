"""`UsageStore`: every `UsageRecord` kept on a `Database`, and the questions asked of them.

Each record's `INSERT` starts as its request finishes and runs beside the
response; SIGTERM waits for every started write (`aclose`), so only requests
still in flight when the process is killed outright may have no record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from server.context import Attempt, UsageRecord
from server.storage.database import Database, Row
from server.usage.query import Dimension, UsageFilter, aggregate_sql
from server.usage.tags import MAX_SESSION_ID, MAX_USER

FIELDS = (
    "request_id", "created", "key_id", "organization_id", "session_id", "user",
    "model_requested", "model", "provider", "attempts", "prompt_tokens", "completion_tokens",
    "cached_tokens", "estimated", "cost_usd", "latency_ms", "ttft_ms", "status", "http_status",
    "streamed", "cancelled", "template", "template_version", "memory_ids",
)  # fmt: skip
_COLUMNS = ", ".join("end_user" if f == "user" else f for f in FIELDS)
_SELECT = f"SELECT {_COLUMNS} FROM usage_records"
_BOOLS = ("estimated", "streamed", "cancelled")
_VALUES = operator.attrgetter(*FIELDS)  # a record's values in FIELDS order, in one call


log = logging.getLogger("tokenwire.usage")

# Seconds the writer waits for company when fewer records than one full INSERT are queued.
GATHER_SECONDS = 0.01


@dataclass(frozen=True, slots=True)
class Bucket:
    """Aggregated usage of one combination of dimension values."""

    dimensions: dict[Dimension, Any]
    requests: int
    errors: int
    cancelled: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float
    mean_latency_ms: float
    mean_ttft_ms: float | None


class UsageStore:
    """A `UsageSink` on a `Database`.

    `record` queues the record and returns, so a response never waits for the
    write; one writer task inserts whatever has queued up, many records per
    statement (a lone record waits `GATHER_SECONDS` for others). This store's
    own reads wait for the queue first (read-your-writes in one process), and
    `flush`/`aclose` wait for it, so a stop loses none.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: list[UsageRecord] = []
        self._writer: asyncio.Future[None] | None = None
        self._flushing = asyncio.Event()

    async def record(self, record: UsageRecord) -> None:
        self._queue.append(record)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        while self._queue:
            if len(self._queue) < ROWS_PER_INSERT:
                await self._company()
            batch, self._queue = self._queue, []
            for chunk in _chunks(batch):
                await self._insert(chunk)

    async def _insert(self, records: list[UsageRecord]) -> None:
        """One multi-row INSERT: SQLite runs it in one step, where `executemany` steps once per
        row and, under load, waits for the event loop's thread to hand back the GIL each time."""
        values = [value for r in records for value in _row(r)]
        try:
            await self._db.execute(_insert_sql(len(records)), *values)
        except Exception:
            ids = ", ".join(r.request_id for r in records)
            log.exception("could not record the usage of requests %s", ids)

    async def _company(self) -> None:
        """Let a few records gather before writing (unless a flush is waiting): each INSERT
        commits once, and one commit costs SQLite more than the row it carries."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GATHER_SECONDS):  # no task per wait, as wait_for makes
                await self._flushing.wait()

    async def flush(self) -> None:
        """Wait until every record handed in so far is written."""
        self._flushing.set()
        try:
            while self._writer is not None and not self._writer.done():
                await asyncio.shield(self._writer)
        finally:
            self._flushing.clear()

    async def aclose(self) -> None:
        await self.flush()

    async def aggregate(
        self, usage_filter: UsageFilter, group_by: Sequence[Dimension] = ()
    ) -> list[Bucket]:
        await self.flush()
        dims = tuple(dict.fromkeys(group_by))
        sql, args = aggregate_sql(usage_filter, dims, self._db.dialect)
        return [_bucket(row, dims) for row in await self._db.fetch(sql, *args)]

    async def total(self, usage_filter: UsageFilter) -> Bucket:
        return (await self.aggregate(usage_filter))[0]

    async def cost(self, usage_filter: UsageFilter) -> float:
        """USD spent by the matching requests (a key's this month, an organization's…)."""
        return (await self.total(usage_filter)).cost_usd

    async def records(self, usage_filter: UsageFilter, limit: int) -> list[UsageRecord]:
        """The matching records, oldest first, at most `limit`."""
        await self.flush()
        where, args = usage_filter.where()
        rows = await self._db.fetch(
            f"{_SELECT} WHERE {where} ORDER BY created, id LIMIT ?", *args, limit
        )
        return [record_of(r) for r in rows]


# Rows per INSERT: 32 x 24 values stays under SQLite's oldest limit of 999 parameters,
# and the statements to prepare (and keep in SQLite's cache) are at most 32.
ROWS_PER_INSERT = 32


def _chunks(records: list[UsageRecord]) -> Iterator[list[UsageRecord]]:
    for start in range(0, len(records), ROWS_PER_INSERT):
        yield records[start : start + ROWS_PER_INSERT]


@cache
def _insert_sql(rows: int) -> str:
    marks = "(" + ", ".join("?" for _ in FIELDS) + ")"
    return f"INSERT INTO usage_records ({_COLUMNS}) VALUES " + ", ".join([marks] * rows)


def _row(r: UsageRecord) -> list[Any]:
    values = dict(zip(FIELDS, _VALUES(r), strict=False))  # the getter gives one per field
    values["created"] = float(r.created)
    # Refused requests are recorded too: keep their oversized tags bounded.
    values["session_id"] = r.session_id[:MAX_SESSION_ID] if r.session_id else r.session_id
    values["user"] = r.user[:MAX_USER] if r.user else r.user
    # orjson writes dataclasses itself; json.dumps of `asdict`s cost more than the rest of the row
    values["attempts"] = orjson.dumps(r.attempts).decode()
    values["memory_ids"] = orjson.dumps(r.memory_ids).decode()
    for name in _BOOLS:
        values[name] = int(values[name])
    for name in ("cost_usd", "latency_ms"):
        values[name] = float(values[name])
    if r.ttft_ms is not None:
        values["ttft_ms"] = float(r.ttft_ms)
    return list(values.values())  # in FIELDS order still: only existing keys were replaced


def record_of(row: Row) -> UsageRecord:
    values = {f: row["end_user" if f == "user" else f] for f in FIELDS}
    values["attempts"] = tuple(Attempt(**a) for a in json.loads(values["attempts"]))
    values["memory_ids"] = tuple(json.loads(values["memory_ids"]))
    for name in _BOOLS:
        values[name] = bool(values[name])
    return UsageRecord(**values)


def _bucket(row: Row, dims: tuple[Dimension, ...]) -> Bucket:
    ttft = row["mean_ttft_ms"]
    return Bucket(
        dimensions={d: row[f"d_{d.value}"] for d in dims},
        requests=int(row["requests"]),
        errors=int(row["errors"] or 0),
        cancelled=int(row["cancelled"] or 0),
        prompt_tokens=int(row["prompt_tokens"] or 0),
        completion_tokens=int(row["completion_tokens"] or 0),
        cached_tokens=int(row["cached_tokens"] or 0),
        cost_usd=float(row["cost_usd"] or 0.0),
        mean_latency_ms=float(row["mean_latency_ms"] or 0.0),
        mean_ttft_ms=None if ttft is None else float(ttft),
    )
