"""Versioned schema migrations, run on start.

Each component (keys, usage, templates, memory…) owns its migrations as a
tuple of `Migration`s numbered from 1; the runner applies the missing ones in
order inside a transaction and records them in `schema_migrations`. On
PostgreSQL an advisory lock keeps two replicas starting at once from racing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from server.storage.database import Database

_LOCK_ID = 0x746F6B656E  # "token": any constant shared by every replica


@dataclass(frozen=True, slots=True)
class Migration:
    component: str
    version: int
    sqlite: str  # statements separated by `;\n`
    postgres: str | None = None  # None: the SQLite text works on both


async def migrate(db: Database, migrations: Iterable[Migration]) -> list[str]:
    """Apply what is missing; returns `component@version` of each migration applied."""
    applied: list[str] = []
    async with db.transaction() as tx:
        if tx.dialect == "postgres":
            await tx.execute("SELECT pg_advisory_xact_lock(?)", _LOCK_ID)
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " component TEXT NOT NULL, version INTEGER NOT NULL,"
            " applied_at DOUBLE PRECISION NOT NULL,"
            " PRIMARY KEY (component, version))"
        )
        done = {
            (r["component"], r["version"])
            for r in await tx.fetch("SELECT component, version FROM schema_migrations")
        }
        for m in sorted(migrations, key=lambda m: (m.component, m.version)):
            if (m.component, m.version) not in done:
                await _apply(tx, m)
                applied.append(f"{m.component}@{m.version}")
    return applied


async def _apply(db: Database, m: Migration) -> None:
    text = m.postgres if db.dialect == "postgres" and m.postgres is not None else m.sqlite
    for statement in filter(None, (s.strip() for s in text.split(";\n"))):
        await db.execute(statement)
    await db.execute(
        "INSERT INTO schema_migrations (component, version, applied_at) VALUES (?, ?, ?)",
        m.component,
        m.version,
        time.time(),
    )
