"""`Journal`: usage rows on local disk until the database holds them.

Each row is one JSON line appended, in one `write`, to the open segment before
its request's last byte goes out. A written line survives the process however
it dies (kill -9, OOM): the kernel has it. Lines are not fsynced one by one —
that would cost a disk flush per request (see bench/usage_journal.py) — so a
machine that loses power may lose the rows of the last moments; a segment set
aside while the database is away is fsynced once.

The usage store seals the open segment when it takes a batch of rows and the
segment has grown past `SEGMENT_BYTES` (and whenever a batch cannot be
written), and discards a sealed segment once the database has every row: rows
already committed stay in the open segment until then, as a replay of them
inserts nothing (rows carry a unique `uid`), which spares a file created and
removed per batch (~7 % of a loaded server's CPU). A segment whose batch could
not be written (the database unreachable) stays on disk in the backlog and is
replayed when the database answers again.

    <dir>/<instance>.lock       flock-ed while the process that writes it lives
    <dir>/<instance>.<n>.jsonl  its segments

At start-up a process adopts the segments of instances whose lock is free
(their process died) and replays them. `<dir>` is per database (a digest of
its URL under `data_dir`), so a journal is only ever replayed into its own
database. The backlog is bounded (`max_bytes`): beyond it, rows are kept in
memory only, and an error is logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("tokenwire.usage")

MAX_BYTES = 256 * 1024 * 1024  # ~500,000 rows waiting for the database
# The open segment is sealed with a batch once this big: ~2,000 rows, replayed at most once.
SEGMENT_BYTES = 1024 * 1024


def open_journal(data_dir: str, database: str) -> Journal | None:
    """The journal of `database` (its URL) under `data_dir`; None for an in-memory database,
    which nothing could be replayed into after a restart."""
    if database.endswith(":memory:"):
        return None
    digest = hashlib.sha256(database.encode()).hexdigest()[:16]
    directory = Path(data_dir).expanduser() / "usage-journal" / digest
    try:
        return Journal(directory)
    except OSError as e:
        raise OSError(
            e.errno,
            f"cannot keep the usage journal in {directory} ({e.strerror}): "
            "set --data-dir to a writable local directory",
        ) from None


@dataclass(slots=True)
class Segment:
    path: Path
    fd: int
    size: int = 0


class Journal:
    def __init__(
        self, directory: Path, max_bytes: int = MAX_BYTES, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._dir = directory
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self.instance = f"{os.getpid()}-{os.urandom(4).hex()}"
        lock = _locked(directory / f"{self.instance}.lock")
        assert lock is not None  # a name no one else has
        self._lock = lock
        self._next = 0
        self._parked = 0  # bytes in segments set aside for the database's return
        self._open = self._segment()

    def append(self, line: bytes) -> bool:
        """Add one row (a JSON line without its newline); False when the backlog is full."""
        segment, line = self._open, line + b"\n"
        if self._parked + segment.size + len(line) > self._max_bytes:
            return False
        segment.size += os.write(segment.fd, line)
        return True

    def seal(self) -> Segment | None:
        """The open segment, closed for appends (None if it is empty); a new one opens."""
        sealed = self._open
        if sealed.size == 0:
            return None
        self._open = self._segment()
        return sealed

    def seal_when_full(self) -> Segment | None:
        """`seal`, once the open segment holds `segment_bytes`; else None (rows stay in it)."""
        return self.seal() if self._open.size >= self._segment_bytes else None

    def discard(self, segment: Segment) -> None:
        """Forget a segment whose rows the database holds."""
        _close(segment)
        segment.path.unlink(missing_ok=True)

    def park(self, segment: Segment) -> None:
        """Keep a segment for later: flushed to the disk, counted against the bound."""
        if segment.fd >= 0:
            os.fsync(segment.fd)
            _close(segment)
        self._parked += segment.size

    def unpark(self, segment: Segment) -> None:
        """A parked segment whose rows the database now holds."""
        self._parked -= segment.size
        self.discard(segment)

    def adopt(self) -> list[Segment]:
        """Segments left by processes that died, now this one's (renamed), oldest first."""
        adopted = []
        for lock in sorted(self._dir.glob("*.lock")):
            instance = lock.name.removesuffix(".lock")
            fd = _locked(lock) if instance != self.instance else None
            if fd is None:
                continue  # alive (or this one)
            for path in sorted(self._dir.glob(f"{instance}.*.jsonl"), key=_number):
                target = self._dir / f"{self.instance}.{self._take()}.jsonl"
                path.rename(target)
                adopted.append(Segment(target, -1, target.stat().st_size))
            lock.unlink(missing_ok=True)
            os.close(fd)
        return adopted

    def close(self, *, committed: bool) -> None:
        """Release the journal; segments still holding rows stay for the next start (the open
        one too, unless the database holds every row it has: `committed`)."""
        _close(self._open)
        if self._open.size == 0 or committed:
            self._open.path.unlink(missing_ok=True)
        if not any(self._dir.glob(f"{self.instance}.*.jsonl")):
            (self._dir / f"{self.instance}.lock").unlink(missing_ok=True)
        os.close(self._lock)
        with contextlib.suppress(OSError):
            self._dir.rmdir()  # only when empty

    def _segment(self) -> Segment:
        path = self._dir / f"{self.instance}.{self._take()}.jsonl"
        return Segment(path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))

    def _take(self) -> int:
        self._next += 1
        return self._next


def read_rows(segment: Segment) -> Iterator[list[Any]]:
    """The rows of a segment; a torn last line (the process died mid-write) is skipped."""
    with segment.path.open("rb") as f:
        for number, line in enumerate(f, 1):
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                log.error("skipping unreadable line %d of %s", number, segment.path)


def _locked(path: Path) -> int | None:
    """An fd holding an exclusive lock on `path`, or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _close(segment: Segment) -> None:
    if segment.fd >= 0:
        os.close(segment.fd)
        segment.fd = -1


def _number(path: Path) -> int:
    return int(path.name.split(".")[-2])
