"""The `Database` interface and migrations, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from server.errors import StorageUnavailable
from server.storage.database import Database, open_database
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


async def test_a_sqlite_file_that_cannot_be_opened_is_storage_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable) as caught:
        await open_database(f"sqlite://{tmp_path}")  # a directory, not a database file
    assert caught.value.http_status == 503 and caught.value.code == "storage_unavailable"


async def test_a_postgres_server_that_is_not_there_is_storage_unavailable() -> None:
    with socket.socket() as closed:  # a port nothing listens on: bound, never listening
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        with pytest.raises(StorageUnavailable):
            await open_database(f"postgresql://postgres@127.0.0.1:{port}/test")
