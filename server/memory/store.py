"""Memories and per-organization memory settings on `Database`.

    memories         id (UUID), organization_id, user_id, session_id, content,
                     source (api | auto), created_at; plus the full-text index
                     of the dialect (SQLite: FTS5 table + triggers; PostgreSQL:
                     a generated tsvector column with a GIN index)
    memory_settings  organization_id, auto_store

Every statement names the organization: another organization's memory is
never listed, fetched, searched or deleted, whatever id is given.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from server.errors import InvalidRequest, NotFound
from server.memory.model import Memory, Scope, Scored, Settings, Source
from server.memory.retrieval import COLUMNS, Retriever, memory_of, retriever_for
from server.storage.database import Database
from server.storage.migrations import Migration

MAX_CONTENT = 8000
MAX_USER = 256
MAX_SESSION = 128
MAX_PAGE = 100

_SETTINGS = (
    "CREATE TABLE memory_settings (organization_id TEXT PRIMARY KEY,"
    " auto_store INTEGER NOT NULL, updated_at DOUBLE PRECISION NOT NULL)"
)
_SQLITE = f"""CREATE TABLE memories (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, \
organization_id TEXT NOT NULL, user_id TEXT, session_id TEXT, content TEXT NOT NULL, \
source TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL);
CREATE INDEX memories_org ON memories (organization_id, created_at);
CREATE VIRTUAL TABLE memories_fts USING fts5(content, content='memories', \
content_rowid='seq', tokenize='porter unicode61');
CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN \
INSERT INTO memories_fts (rowid, content) VALUES (new.seq, new.content); END;
CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN \
INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', old.seq, old.content); \
END;
CREATE TRIGGER memories_au AFTER UPDATE OF content ON memories BEGIN \
INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', old.seq, old.content); \
INSERT INTO memories_fts (rowid, content) VALUES (new.seq, new.content); END;
{_SETTINGS}"""
_POSTGRES = f"""CREATE TABLE memories (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, \
user_id TEXT, session_id TEXT, content TEXT NOT NULL, source TEXT NOT NULL, \
created_at DOUBLE PRECISION NOT NULL, \
search tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED);
CREATE INDEX memories_org ON memories (organization_id, created_at);
CREATE INDEX memories_search ON memories USING GIN (search);
{_SETTINGS}"""

MIGRATIONS = (Migration("memory", 1, _SQLITE, _POSTGRES),)


def not_found(memory_id: str) -> NotFound:
    return NotFound(f"Memory '{memory_id}' was not found.", param="memory", code="memory_not_found")


def check(content: str, user: str | None, session_id: str | None) -> str:
    """The content to store, stripped; 400 naming what is empty or too long."""
    content = content.strip()
    if not content:
        raise InvalidRequest("'content' must not be empty.", param="content")
    for value, name, most in (
        (content, "content", MAX_CONTENT),
        (user, "user", MAX_USER),
        (session_id, "session_id", MAX_SESSION),
    ):
        if value is not None and len(value) > most:
            raise InvalidRequest(f"'{name}' is longer than {most} characters.", param=name)
    return content


class MemoryStore:
    def __init__(
        self,
        db: Database,
        retriever: Retriever | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.retriever = retriever or retriever_for(db)
        self._clock = clock

    async def add(
        self,
        organization_id: str,
        content: str,
        *,
        user: str | None = None,
        session_id: str | None = None,
        source: Source = "api",
    ) -> Memory:
        memory = Memory(
            id=str(uuid.uuid4()),
            organization_id=organization_id,
            content=check(content, user, session_id),
            user=user or None,
            session_id=session_id or None,
            created_at=self._clock(),
            source=source,
        )
        await self.db.execute(
            "INSERT INTO memories (id, organization_id, user_id, session_id, content, source,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            memory.id,
            organization_id,
            memory.user,
            memory.session_id,
            memory.content,
            source,
            memory.created_at,
        )
        await self.retriever.index(memory)
        return memory

    async def get(self, organization_id: str, memory_id: str) -> Memory:
        row = await self.db.fetchrow(
            f"SELECT {COLUMNS} FROM memories m WHERE m.organization_id = ? AND m.id = ?",
            organization_id,
            memory_id,
        )
        if row is None:
            raise not_found(memory_id)
        return memory_of(row)

    async def page(
        self,
        organization_id: str,
        *,
        user: str | None = None,
        session_id: str | None = None,
        limit: int = 20,
        after: str | None = None,
    ) -> tuple[list[Memory], bool]:
        """A page of memories, newest first, and whether more follow."""
        where: list[str] = ["m.organization_id = ?"]
        args: list[Any] = [organization_id]
        for column, value in (("user_id", user), ("session_id", session_id)):
            if value is not None:
                where.append(f"m.{column} = ?")
                args.append(value)
        if after is not None:
            cursor = await self._cursor(organization_id, after)
            where.append("(m.created_at < ? OR (m.created_at = ? AND m.id < ?))")
            args.extend([cursor.created_at, cursor.created_at, cursor.id])
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self.db.fetch(
            f"SELECT {COLUMNS} FROM memories m WHERE {' AND '.join(where)}"
            " ORDER BY m.created_at DESC, m.id DESC LIMIT ?",
            *args,
            limit + 1,
        )
        return [memory_of(r) for r in rows[:limit]], len(rows) > limit

    async def _cursor(self, organization_id: str, after: str) -> Memory:
        try:
            return await self.get(organization_id, after)
        except NotFound:
            raise InvalidRequest(f"'after' names no memory: '{after}'.", param="after") from None

    async def search(self, scope: Scope, text: str, limit: int = 10) -> list[Scored]:
        return await self.retriever.search(scope, text, max(1, min(limit, MAX_PAGE)))

    async def delete(self, organization_id: str, memory_id: str) -> Memory:
        memory = await self.get(organization_id, memory_id)
        await self.db.execute(
            "DELETE FROM memories WHERE organization_id = ? AND id = ?", organization_id, memory_id
        )
        await self.retriever.forget(memory)
        return memory

    async def holds(self, organization_id: str, content: str, user: str | None) -> bool:
        """Whether the organization already keeps this exact text for this user (or org-wide)."""
        row = await self.db.fetchrow(
            "SELECT id FROM memories WHERE organization_id = ? AND content = ?"
            " AND (user_id IS NULL OR user_id = ?)",
            organization_id,
            content.strip(),
            user,
        )
        return row is not None

    async def settings(self, organization_id: str) -> Settings:
        row = await self.db.fetchrow(
            "SELECT auto_store FROM memory_settings WHERE organization_id = ?", organization_id
        )
        return Settings(auto_store=bool(row["auto_store"])) if row else Settings()

    async def set_settings(self, organization_id: str, settings: Settings) -> Settings:
        args: list[Any] = [organization_id, int(settings.auto_store), self._clock()]
        await self.db.execute(
            "INSERT INTO memory_settings (organization_id, auto_store, updated_at)"
            " VALUES (?, ?, ?) ON CONFLICT (organization_id) DO UPDATE"
            " SET auto_store = excluded.auto_store, updated_at = excluded.updated_at",
            *args,
        )
        return settings
