"""PostgreSQL through an asyncpg pool; `?` placeholders become `$n`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg

from server.storage.database import Database, Dialect, Row

_PLACEHOLDER = re.compile(r"\?")


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
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
        return cls(pool)

    @property
    def _target(self) -> Any:
        return self._conn or self._pool

    async def execute(self, sql: str, *args: Any) -> None:
        await self._target.execute(to_dollar(sql), *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._target.executemany(to_dollar(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self._target.fetch(to_dollar(sql), *args)]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row = await self._target.fetchrow(to_dollar(sql), *args)
        return dict(row) if row is not None else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        if self._conn is not None:
            yield self  # nested: part of the outer transaction
            return
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresDatabase(self._pool, conn)

    async def close(self) -> None:
        if self._conn is None:
            await self._pool.close()
