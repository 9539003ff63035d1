"""PostgreSQL through an asyncpg pool; `?` placeholders become `$n`.

asyncpg's errors are translated here, once: a server that cannot be reached
(refused, reset, shutting down, timed out) is `StorageUnavailable`; text the
server cannot store is `InvalidRequest`. Anything else is a bug and passes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from itertools import chain
from typing import Any

import asyncpg
from asyncpg import exceptions as pg

from server.errors import InvalidRequest, StorageUnavailable
from server.storage.database import Database, Dialect, Row, refuse_nul

_PLACEHOLDER = re.compile(r"\?")

# The server is gone or going: refused, reset or timed out (OSError), a connection lost
# (class 08) or a server shutting down or starting (class 57).
_UNREACHABLE = (OSError, pg.PostgresConnectionError, pg.OperatorInterventionError)
# Text the server's encoding cannot hold (22021 invalid byte sequence, 22P05).
_BAD_TEXT = (pg.CharacterNotInRepertoireError, pg.UntranslatableCharacterError)


def translated(error: Exception) -> Exception:
    """asyncpg's `error` as one of ours, or itself when it is not one we expect."""
    if isinstance(error, _BAD_TEXT):
        return InvalidRequest(f"Text the database cannot store: {error}", code="invalid_text")
    if isinstance(error, _UNREACHABLE) or _closed(error):
        return StorageUnavailable(f"The database is unavailable: {error}")
    return error


def _closed(error: Exception) -> bool:
    """asyncpg's InterfaceError for a connection lost under a statement."""
    return (
        isinstance(error, pg.InterfaceError)
        and "connection" in str(error)
        and ("closed" in str(error) or "lost" in str(error))
    )


@lru_cache(maxsize=512)
def to_dollar(sql: str) -> str:
    """`… = ? AND … = ?` -> `… = $1 AND … = $2` (our SQL has no literal question marks)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class PostgresDatabase:
    dialect: Dialect = "postgres"

    def __init__(self, pool: Any, conn: Any = None) -> None:
        self._pool = pool
        self._conn = conn  # set inside a transaction

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PostgresDatabase:
        try:
            pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
        except Exception as e:
            raise translated(e) from None
        return cls(pool)

    @property
    def _target(self) -> Any:
        return self._conn or self._pool

    # A plain `except` in each call, not a context manager: it costs nothing when all is well.
    async def execute(self, sql: str, *args: Any) -> None:
        refuse_nul(args)
        try:
            await self._target.execute(to_dollar(sql), *args)
        except Exception as e:
            raise translated(e) from None

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        refuse_nul(chain.from_iterable(rows))
        try:
            await self._target.executemany(to_dollar(sql), rows)
        except Exception as e:
            raise translated(e) from None

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        refuse_nul(args)
        try:
            return [dict(r) for r in await self._target.fetch(to_dollar(sql), *args)]
        except Exception as e:
            raise translated(e) from None

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        refuse_nul(args)
        try:
            row = await self._target.fetchrow(to_dollar(sql), *args)
        except Exception as e:
            raise translated(e) from None
        return dict(row) if row is not None else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        if self._conn is not None:
            yield self  # nested: part of the outer transaction
            return
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield PostgresDatabase(self._pool, conn)
        except Exception as e:  # the body's own errors are ours already and pass unchanged
            raise translated(e) from None

    async def close(self) -> None:
        if self._conn is None:
            await self._pool.close()
