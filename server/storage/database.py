"""The `Database` interface every store is written against, and how to open one.

SQL is written once with `?` placeholders; the PostgreSQL backend rewrites
them to `$1…`. Rows are plain mappings. Where the dialects differ (full-text
search, for one) a store asks `db.dialect`.

    sqlite:///path/to/tokenwire.db     the embedded default (WAL mode)
    sqlite://:memory:                  tests
    postgresql://user@host:5432/name   shared state across replicas

Both backends behave alike at the edges: text holding NUL is refused before it
reaches either driver (PostgreSQL cannot store it; SQLite would), as a 400;
a database that cannot be reached is `StorageUnavailable` (503). Each backend
translates its driver's errors once, in its own module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

from server.errors import InvalidRequest

Row = Mapping[str, Any]
Dialect = Literal["sqlite", "postgres"]


class Database(Protocol):
    dialect: Dialect

    async def execute(self, sql: str, *args: Any) -> None:
        """Run one statement."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row of arguments."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """All rows of a query."""
        ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first row of a query, or None."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Database]:
        """A transaction: statements on the yielded database commit together or not at all."""
        ...

    async def close(self) -> None: ...


def refuse_nul(args: Iterable[Any], param: str | None = None) -> None:
    """`InvalidRequest` when a text argument holds NUL, which PostgreSQL's text cannot;
    `param` names the request field the text came from, when one did."""
    for arg in args:
        if arg.__class__ is str and "\x00" in arg:
            what = f"'{param}'" if param else "Text"
            raise InvalidRequest(
                f"{what} may not contain the NUL character (\\u0000).",
                param=param,
                code="invalid_text",
            )


async def open_database(url: str) -> Database:
    """Open (and create, for SQLite) the database at `url`."""
    if url.startswith("sqlite://"):
        from server.storage.sqlite import SqliteDatabase

        return await SqliteDatabase.open(url.removeprefix("sqlite://"))
    if url.startswith(("postgresql://", "postgres://")):
        from server.storage.postgres import PostgresDatabase

        return await PostgresDatabase.open(url)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://…")
