"""Finding the memories most relevant to a text: the `Retriever` interface and two of them.

    Retriever            search(scope, text, limit); index/forget hooks
    ├── Fts5Retriever    SQLite FTS5 with the porter stemmer, ranked by bm25
    └── PostgresRetriever  tsvector (english) with a GIN index, ranked by ts_rank_cd

Both match memories sharing any content word with the text (stop words and
one-letter words dropped), so a long question still finds a short fact. The
text never reaches the query language as syntax: it is cut into words of
letters and digits first. Every query is confined to the scope's
organization. An embedding retriever would implement the same three methods
(keeping its vectors up to date in `index`/`forget`) and need nothing else
changed.
"""

from __future__ import annotations

import re
from typing import Protocol

from server.memory.model import Memory, Scope, Scored
from server.storage.database import Database, Row

_WORD = re.compile(r"[^\W_]+")
MAX_TERMS = 32
_STOP_WORDS_TEXT = """
a about above after again all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just me
more most my myself no nor not now of off on once only or other our ours ourselves out over own
same she should so some such than that the their theirs them themselves then there these they
this those through to too under until up very was we were what when where which while who whom
why will with would you your yours yourself yourselves tell know please remember
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

COLUMNS = "m.id, m.organization_id, m.user_id, m.session_id, m.content, m.source, m.created_at"
SCOPE = (
    "m.organization_id = ? AND (m.user_id IS NULL OR m.user_id = ?)"
    " AND (m.session_id IS NULL OR m.session_id = ?)"
)


class Retriever(Protocol):
    async def search(self, scope: Scope, text: str, limit: int) -> list[Scored]:
        """The memories in `scope` most relevant to `text`, best first."""
        ...

    async def index(self, memory: Memory) -> None:
        """Called after a memory is added."""
        ...

    async def forget(self, memory: Memory) -> None:
        """Called after a memory is deleted."""
        ...


def terms(text: str) -> list[str]:
    """The distinct content words of `text`, lower-cased, at most `MAX_TERMS`."""
    words = (w.lower() for w in _WORD.findall(text))
    kept = (w for w in words if len(w) > 1 and w not in STOP_WORDS)
    return list(dict.fromkeys(kept))[:MAX_TERMS]


def memory_of(row: Row) -> Memory:
    return Memory(
        id=row["id"],
        organization_id=row["organization_id"],
        content=row["content"],
        user=row["user_id"],
        session_id=row["session_id"],
        created_at=float(row["created_at"]),
        source=row["source"],
    )


def _scope_args(scope: Scope) -> tuple[str, str | None, str | None]:
    return scope.organization_id, scope.user, scope.session_id


class Fts5Retriever:
    """SQLite: an external-content FTS5 table kept in step by triggers; bm25 ranks."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def search(self, scope: Scope, text: str, limit: int) -> list[Scored]:
        words = terms(text)
        if not words:
            return []
        rows = await self._db.fetch(
            f"SELECT {COLUMNS}, bm25(memories_fts) AS rank FROM memories_fts"
            " JOIN memories m ON m.seq = memories_fts.rowid"
            f" WHERE memories_fts MATCH ? AND {SCOPE}"
            " ORDER BY rank, m.created_at DESC LIMIT ?",
            " OR ".join(f'"{w}"' for w in words),
            *_scope_args(scope),
            limit,
        )
        return [Scored(memory_of(r), -float(r["rank"])) for r in rows]

    async def index(self, memory: Memory) -> None:
        pass  # the insert trigger indexes

    async def forget(self, memory: Memory) -> None:
        pass  # the delete trigger forgets


class PostgresRetriever:
    """PostgreSQL: a generated tsvector column with a GIN index; ts_rank_cd ranks."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def search(self, scope: Scope, text: str, limit: int) -> list[Scored]:
        words = terms(text)
        if not words:
            return []
        rows = await self._db.fetch(
            f"SELECT {COLUMNS}, ts_rank_cd(m.search, q) AS rank"
            " FROM memories m, to_tsquery('english', ?) q"
            f" WHERE m.search @@ q AND {SCOPE}"
            " ORDER BY rank DESC, m.created_at DESC LIMIT ?",
            " | ".join(words),
            *_scope_args(scope),
            limit,
        )
        return [Scored(memory_of(r), float(r["rank"])) for r in rows]

    async def index(self, memory: Memory) -> None:
        pass  # the generated column indexes

    async def forget(self, memory: Memory) -> None:
        pass


def retriever_for(db: Database) -> Retriever:
    """The full-text retriever of the database's dialect."""
    return PostgresRetriever(db) if db.dialect == "postgres" else Fts5Retriever(db)
