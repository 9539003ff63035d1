"""SQLite through aiosqlite: one connection, WAL, statements serialized by a lock.

One connection keeps transactions simple and is plenty for the embedded
default; the shared, many-replica setup is PostgreSQL's job. A file that
cannot be opened, read or written, or stays locked past the busy timeout, is
`StorageUnavailable`, translated here once; other errors are bugs and pass.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import aiosqlite

from server.errors import StorageUnavailable
from server.storage.database import Database, Dialect, Row, refuse_nul

# sqlite3 error names (`sqlite_errorname`, by prefix) that mean the file, not the SQL, failed.
_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL")


def translated(error: Exception) -> Exception:
    """sqlite3's `error` as `StorageUnavailable` when the file failed, else itself."""
    name = getattr(error, "sqlite_errorname", "")
    if isinstance(error, sqlite3.OperationalError) and name.startswith(_UNAVAILABLE):
        return StorageUnavailable(f"The database is unavailable: {error}")
    return error


class SqliteDatabase:
    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> SqliteDatabase:
        if path not in ("", ":memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(path or ":memory:", isolation_level=None)
            conn.row_factory = aiosqlite.Row
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.execute("PRAGMA busy_timeout=5000")
        except Exception as e:
            raise translated(e) from None
        return cls(conn)

    async def execute(self, sql: str, *args: Any) -> None:
        async with self._lock:
            await self._execute(sql, args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self._lock:
            await self._executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._lock:
            return await self._fetch(sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    # A plain `except` in each, not a context manager: it costs nothing when all is well.
    async def _execute(self, sql: str, args: Sequence[Any]) -> None:
        refuse_nul(args)
        try:
            await self._conn.execute(sql, args)
        except Exception as e:
            raise translated(e) from None

    async def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        refuse_nul(chain.from_iterable(rows))
        try:
            await self._conn.executemany(sql, rows)
        except Exception as e:
            raise translated(e) from None

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Row]:
        refuse_nul(args)
        try:
            # One trip to aiosqlite's thread, not three (execute, fetch, close): under load
            # each trip waits for the event loop's thread to let go of the GIL.
            return [dict(r) for r in await self._conn.execute_fetchall(sql, args)]
        except Exception as e:
            raise translated(e) from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        async with self._lock:
            await self._execute("BEGIN IMMEDIATE", ())
            try:
                yield _InTransaction(self)
            except BaseException:
                await self._execute("ROLLBACK", ())
                raise
            await self._execute("COMMIT", ())

    async def close(self) -> None:
        await self._conn.close()


class _InTransaction:
    """The database inside a transaction: the lock is already held."""

    dialect: Dialect = "sqlite"

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, *args: Any) -> None:
        await self._db._execute(sql, args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._db._executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._db._fetch(sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        yield self  # nested: part of the outer transaction

    async def close(self) -> None:
        pass
