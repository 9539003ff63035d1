"""The `Database` interface and migrations, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import pytest

from server.storage.database import Database
from server.storage.migrations import Migration, migrate

NOTES = (
    Migration(
        "notes", 1, "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL, n INTEGER)"
    ),
    Migration(
        "notes", 2, "ALTER TABLE notes ADD COLUMN tag TEXT;\nCREATE INDEX notes_tag ON notes (tag)"
    ),
)


async def test_migrations_apply_once_in_order(database: Database) -> None:
    assert await migrate(database, NOTES) == ["notes@1", "notes@2"]
    assert await migrate(database, NOTES) == []
    later = (*NOTES, Migration("notes", 3, "CREATE INDEX notes_n ON notes (n)"))
    assert await migrate(database, later) == ["notes@3"]


async def test_placeholders_rows_and_mappings(database: Database) -> None:
    await migrate(database, NOTES)
    await database.executemany(
        "INSERT INTO notes (id, body, n, tag) VALUES (?, ?, ?, ?)",
        [("a", "first", 1, "x"), ("b", "second", 2, "y")],
    )
    rows = await database.fetch("SELECT id, n FROM notes WHERE n >= ? ORDER BY id", 1)
    assert rows == [{"id": "a", "n": 1}, {"id": "b", "n": 2}]
    assert await database.fetchrow("SELECT body FROM notes WHERE id = ?", "b") == {"body": "second"}
    assert await database.fetchrow("SELECT body FROM notes WHERE id = ?", "zzz") is None


async def test_transaction_rolls_back_on_error(database: Database) -> None:
    await migrate(database, NOTES)
    with pytest.raises(RuntimeError):
        async with database.transaction() as tx:
            await tx.execute("INSERT INTO notes (id, body) VALUES (?, ?)", "c", "kept?")
            raise RuntimeError("abort")
    assert await database.fetchrow("SELECT id FROM notes WHERE id = ?", "c") is None
    async with database.transaction() as tx:
        await tx.execute("INSERT INTO notes (id, body) VALUES (?, ?)", "d", "kept")
    assert await database.fetchrow("SELECT id FROM notes WHERE id = ?", "d") == {"id": "d"}
