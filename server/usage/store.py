"""`UsageStore`: every `UsageRecord` kept on a `Database`, and the questions asked of them.

Records are written by a `UsageWriter` in the background, beside the
response, after each was appended to the local journal (when there is one):
so a request whose answer went out keeps its record even if the process is
killed outright, and records made while the database is away wait on disk for
it (see `server.usage.writer` and `server.usage.journal`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.pipeline.context import UsageRecord
from server.storage.database import Database, Row
from server.usage.journal import Journal
from server.usage.query import Dimension, UsageFilter, aggregate_sql
from server.usage.rows import SELECT, record_of
from server.usage.writer import UsageWriter


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

    `record` journals and queues the record and returns, so a response never
    waits for the database. This store's own reads wait for the queue first
    (read-your-writes in one process); `flush`/`aclose` wait for it too, so a
    stop loses none, and `recover` (at start-up) replays what a process that
    died left in the journal.
    """

    def __init__(self, db: Database, journal: Journal | None = None) -> None:
        self._db = db
        self._writer = UsageWriter(db, journal)

    async def record(self, record: UsageRecord) -> None:
        self._writer.add(record)

    def backlog(self) -> tuple[int, int]:
        """Rows waiting for the database, and rows lost for good so far."""
        return self._writer.queued, self._writer.dropped

    async def recover(self) -> None:
        await self._writer.recover()

    async def flush(self) -> None:
        """Wait until every record handed in so far is written (or, with the database away,
        kept on disk for it)."""
        await self._writer.flush()

    async def drain(self) -> None:
        """Wait until every record handed in so far is in the database."""
        await self._writer.drain()

    async def aclose(self) -> None:
        await self._writer.aclose()

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
            f"{SELECT} WHERE {where} ORDER BY created, id LIMIT ?", *args, limit
        )
        return [record_of(r) for r in rows]


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
