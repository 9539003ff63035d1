"""`UsageWriter`: usage rows into the database in batches, none lost to a bad row or an outage.

`add` bounds the record's values (`rows.row`), appends the row to the journal
(on disk before the response's last byte) and queues it; one writer task
inserts whatever has queued up, many rows per statement (a lone row waits
`GATHER_SECONDS` for company, as each statement commits once).

- A statement that fails for its data is retried row by row, so only the row
  at fault is affected, and that row is tried once more as plain ASCII.
- A database that cannot be reached (`StorageUnavailable`) parks the batch's
  journal segment on disk; while anything is parked, new rows go to the
  journal only, and a retry task replays the backlog (backing off) until the
  database takes it all. Rows are written at least once: a replay of rows
  already stored inserts nothing (their `uid` is unique).
- `recover` replays what a process that died left in the journal.

Without a journal (an in-memory database, tests) rows a statement could not
write are logged and lost, as there is nowhere to keep them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Iterator
from typing import Any

import orjson

from server.errors import StorageUnavailable
from server.pipeline.context import UsageRecord
from server.storage.database import Database
from server.usage import rows
from server.usage.journal import Journal, Segment, read_rows

log = logging.getLogger("tokenwire.usage")

# Seconds the writer waits for company when fewer rows than one full INSERT are queued.
GATHER_SECONDS = 0.01
# Rows per INSERT: 32 x 27 values stays under SQLite's oldest limit of 999 parameters,
# and the statements to prepare (and keep in SQLite's cache) are at most 32.
ROWS_PER_INSERT = 32
# Seconds between tries of a database that was unreachable: doubling from the first.
RETRY_FIRST, RETRY_MAX = 0.05, 2.0


class UsageWriter:
    def __init__(self, db: Database, journal: Journal | None = None) -> None:
        self._db = db
        self._journal = journal
        self._queue: list[list[Any]] = []
        self._writer: asyncio.Future[None] | None = None
        self._flushing = asyncio.Event()
        self._backlog: list[Segment] = []  # parked segments, oldest first
        self._retry: asyncio.Future[None] | None = None
        # A uid per row: this writer's random prefix and a count (cheaper than a uuid each).
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count()
        self.dropped = 0  # rows lost for good (metrics read it)
        self._unjournaled: set[str] = set()  # uids of queued rows the full journal refused

    @property
    def queued(self) -> int:
        """Rows waiting for the writer task."""
        return len(self._queue)

    def add(self, record: UsageRecord) -> None:
        row = rows.row(record, f"{self._prefix}{next(self._count):x}")
        if self._journal is not None and not self._journal.append(orjson.dumps(row)):
            if self._backlog:  # the database is away too: nowhere to keep it
                log.error("usage journal full: lost the usage of request %s", row[0])
                self.dropped += 1
                return
            log.warning("usage journal full: request %s's usage is in memory only", row[0])
            self._unjournaled.add(row[-1])
        self._queue.append(row)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())

    async def recover(self) -> None:
        """Replay the segments of processes that died (start-up); an unreachable database
        leaves them to the retry task."""
        if self._journal is not None:
            self._backlog.extend(self._journal.adopt())
            await self._replay_backlog(retry=False)

    async def flush(self) -> None:
        """Wait until every row added so far is in the database or parked on disk."""
        self._flushing.set()
        try:
            while self._writer is not None and not self._writer.done():
                await asyncio.shield(self._writer)
        finally:
            self._flushing.clear()

    async def drain(self) -> None:
        """`flush`, then wait for the parked rows too (the database must come back)."""
        await self.flush()
        while self._retry is not None and not self._retry.done():
            await asyncio.shield(self._retry)

    async def aclose(self) -> None:
        await self.flush()
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        if self._journal is not None:
            # Parked segments stay, for the next start to replay; with none, every row is stored.
            self._journal.close(committed=not self._backlog)

    async def _write(self) -> None:
        while self._queue:
            if len(self._queue) < ROWS_PER_INSERT:
                await self._company()
            batch, self._queue = self._queue, []
            if self._backlog and self._journal is not None:
                self._settle(batch, stored=False)
                continue  # the database is away: the rows wait in the journal's open segment
            segment = self._journal.seal_when_full() if self._journal is not None else None
            try:
                await self._insert(batch)
            except StorageUnavailable as e:
                if segment is None and self._journal is not None:
                    segment = self._journal.seal()  # the batch's rows are in the open segment
                self._settle(batch, stored=False)
                self._unreachable(segment, batch, e)
            else:
                self._settle(batch, stored=True)
                if segment is not None and self._journal is not None:
                    self._journal.discard(segment)

    def _settle(self, batch: list[list[Any]], *, stored: bool) -> None:
        """Rows only in memory (the journal was full) are lost when their batch is not stored:
        counted and logged, never silently."""
        if not self._unjournaled:
            return
        uids = {row[-1] for row in batch}
        lost = len(uids & self._unjournaled)
        self._unjournaled -= uids
        if lost and not stored:
            log.error("usage journal full and database away: lost %d requests' usage", lost)
            self.dropped += lost

    async def _company(self) -> None:
        """Let a few rows gather before writing (unless a flush is waiting): each INSERT
        commits once, and one commit costs SQLite more than the row it carries."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GATHER_SECONDS):  # no task per wait, as wait_for makes
                await self._flushing.wait()

    async def _insert(self, batch: list[list[Any]]) -> None:
        for chunk in _chunks(batch):
            await self._insert_rows(chunk)

    async def _insert_rows(self, chunk: list[list[Any]]) -> None:
        """One multi-row INSERT: SQLite runs it in one step, where `executemany` steps once per
        row and, under load, waits for the event loop's thread to hand back the GIL each time.
        A failure that is not the database's absence is narrowed down to its row."""
        try:
            await self._db.execute(rows.insert_sql(len(chunk)), *_flat(chunk))
        except StorageUnavailable:
            raise
        except Exception:
            if len(chunk) > 1:
                for row in chunk:
                    await self._insert_rows([row])
            else:
                await self._last_try(chunk[0])

    async def _last_try(self, row: list[Any]) -> None:
        try:
            await self._db.execute(rows.insert_sql(1), *rows.quarantined(row))
        except StorageUnavailable:
            raise
        except Exception:
            log.exception("could not record the usage of request %s", row[0])
            self.dropped += 1
        else:
            log.warning("recorded the usage of request %s with its text escaped", row[0])

    def _unreachable(
        self, segment: Segment | None, batch: list[list[Any]], error: StorageUnavailable
    ) -> None:
        if segment is None:
            log.error("lost the usage of %d requests: %s", len(batch), error.message)
            self.dropped += len(batch)
            return
        log.warning("usage kept on disk until the database is back: %s", error.message)
        self._park(segment)

    def _park(self, segment: Segment) -> None:
        assert self._journal is not None  # only journaled rows have a segment
        self._journal.park(segment)
        self._backlog.append(segment)
        if self._retry is None or self._retry.done():
            self._retry = asyncio.ensure_future(self._replay_backlog(retry=True))

    async def _replay_backlog(self, *, retry: bool) -> None:
        """Write the parked segments, oldest first; with `retry`, until the database takes
        them (backing off), and then the open segment, whose rows are not queued."""
        delay = RETRY_FIRST
        while self._backlog:
            segment = self._backlog[0]
            try:
                await self._insert([rows.current(r) for r in read_rows(segment)])
            except StorageUnavailable:
                if not retry:
                    self._retry = asyncio.ensure_future(self._replay_backlog(retry=True))
                    return
                await asyncio.sleep(delay)  # backing off a database that is away
                delay = min(delay * 2, RETRY_MAX)
                continue
            assert self._journal is not None
            self._journal.unpark(self._backlog.pop(0))
            if not self._backlog and retry:
                self._reopen()

    def _reopen(self) -> None:
        """The database is back: rows added while it was away are in the open segment only."""
        assert self._journal is not None
        if (segment := self._journal.seal()) is not None:
            self._park(segment)  # this task replays it next: `_park` starts no other


def _chunks(batch: list[list[Any]]) -> Iterator[list[list[Any]]]:
    for start in range(0, len(batch), ROWS_PER_INSERT):
        yield batch[start : start + ROWS_PER_INSERT]


def _flat(chunk: list[list[Any]]) -> list[Any]:
    return [value for row in chunk for value in row]
