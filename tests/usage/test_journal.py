"""The usage journal on its own: what it adopts, what it skips, where it stops; and a store
whose database was away when the process died replays the parked rows at the next start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import orjson

from server.errors import StorageUnavailable
from server.storage.database import Database
from server.storage.migrations import migrate
from server.usage import rows
from server.usage.journal import Journal, Segment, read_rows
from server.usage.migrations import MIGRATIONS as USAGE
from server.usage.query import UsageFilter
from server.usage.store import UsageStore
from tests.usage.factories import record


def test_a_live_journal_is_never_adopted_a_dead_ones_is(tmp_path: Path) -> None:
    live, other = Journal(tmp_path), Journal(tmp_path)
    live.append(b"[1]")
    assert other.adopt() == []  # its process (here: this one) holds the lock
    dead = subprocess.run(  # a process that journals a row and exits without closing
        [sys.executable, "-c", DIES_WITH_A_ROW, str(tmp_path)], check=True
    )
    assert dead.returncode == 0
    (adopted,) = other.adopt()
    assert list(read_rows(adopted)) == [[2]] and adopted.path.name.startswith(other.instance)
    assert other.adopt() == []  # once
    live.close(committed=False)
    other.close(committed=False)


DIES_WITH_A_ROW = """
import os, sys
from pathlib import Path
from typing import cast
from server.usage.journal import Journal
Journal(Path(sys.argv[1])).append(b"[2]")
os._exit(0)
"""


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append(b"[1]")
    os.write(journal._open.fd, b'["cut sho')  # the process died mid-write
    segment = journal.seal()
    assert segment is not None and list(read_rows(segment)) == [[1]]
    journal.close(committed=False)


def test_the_backlog_is_bounded(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=100)
    line = orjson.dumps(["x" * 40])
    assert journal.append(line) and journal.append(line)
    assert not journal.append(line)  # over 100 bytes: refused, not written
    segment = journal.seal()
    assert segment is not None
    journal.park(segment)
    assert not journal.append(line)  # parked bytes count too
    journal.unpark(segment)
    assert journal.append(line)
    journal.close(committed=False)


def test_the_open_segment_is_sealed_once_full(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=80)
    line = orjson.dumps(["x" * 40])  # 45 bytes with its newline
    journal.append(line)
    assert journal.seal_when_full() is None  # 45 of 80 bytes: the rows stay where they are
    journal.append(line)
    full = journal.seal_when_full()
    assert full is not None and list(read_rows(full)) == [["x" * 40]] * 2
    journal.append(line)  # into a new segment
    assert journal.seal_when_full() is None
    journal.discard(full)
    journal.close(committed=True)
    assert not tmp_path.exists()  # every row stored: nothing left, the directory gone too


async def test_batches_written_leave_one_segment_and_no_row_twice(
    database: Database, tmp_path: Path
) -> None:
    """Stored batches do not each create and remove a file; the rows they leave in the open
    segment, replayed after a crash, insert nothing twice."""
    await migrate(database, USAGE)
    journal = tmp_path / "journal"
    store = UsageStore(database, Journal(journal))
    for i in range(6):
        await store.record(record(request_id=f"req_{i}"))
        await store.flush()  # a batch of its own
    (segment,) = journal.glob("*.jsonl")
    assert segment.name.endswith(".1.jsonl")  # the first segment still: none made per batch
    assert len(list(read_rows(Segment(segment, -1)))) == 6  # stored, and still on disk
    dead = tmp_path / "replayed"  # as a process killed with the segment open left it
    dead.mkdir()
    (dead / "dead-1.lock").touch()  # a lock no process holds
    segment.rename(dead / "dead-1.1.jsonl")
    replayed = UsageStore(database, Journal(dead))
    await replayed.recover()
    await replayed.drain()
    assert sorted(r.request_id for r in await store.records(UsageFilter(), 20)) == [
        f"req_{i}" for i in range(6)
    ]
    await store.aclose()
    await replayed.aclose()
    assert not journal.exists()  # stored, so nothing left behind


async def test_rows_parked_when_the_process_stopped_are_written_at_the_next_start(
    database: Database, tmp_path: Path
) -> None:
    """Recorded while the database was away, then stopped; the next store on the same
    journal writes them, once."""
    await migrate(database, USAGE)
    journal = tmp_path / "journal"
    away = UsageStore(cast(Database, _Unreachable(database)), Journal(journal))
    for i in range(5):
        await away.record(record(request_id=f"req_{i}"))
    await away.aclose()  # the rows are parked on disk, the lock released
    again = UsageStore(database, Journal(journal))
    await again.recover()
    await asyncio.wait_for(again.drain(), timeout=10)
    assert [r.request_id for r in await again.records(UsageFilter(), 10)] == [
        f"req_{i}" for i in range(5)
    ]
    await again.aclose()
    assert not journal.exists()  # nothing left behind


async def test_rows_the_full_journal_refused_are_counted_lost_when_the_database_is_away(
    database: Database, tmp_path: Path
) -> None:
    """A journal with room for one row, a database away: the row journaled is parked, the two
    kept in memory only cannot be kept anywhere, and say so."""
    await migrate(database, USAGE)
    journal = Journal(tmp_path / "journal", max_bytes=len(orjson.dumps(row_of("req_0"))) + 1)
    away = UsageStore(cast(Database, _Unreachable(database)), journal)
    for i in range(3):
        await away.record(record(request_id=f"req_{i}"))
    await away.flush()
    assert away.backlog() == (0, 2)
    await away.aclose()
    again = UsageStore(database, Journal(tmp_path / "journal"))
    await again.recover()
    await asyncio.wait_for(again.drain(), timeout=10)
    assert [r.request_id for r in await again.records(UsageFilter(), 10)] == ["req_0"]
    await again.aclose()


def row_of(request_id: str) -> list[object]:
    """The journal line of a record, as the writer makes it (uid of the same length)."""
    return rows.row(record(request_id=request_id), "0" * 17)


class _Unreachable:
    """A database that is away: every statement fails as a lost connection does (only
    `execute` is needed: the store writes with it)."""

    def __init__(self, db: Database) -> None:
        self.dialect = db.dialect

    async def execute(self, sql: str, *args: object) -> None:
        raise StorageUnavailable("The database is unavailable: connection refused")
