"""Recorded agent sessions on `Database`, always within one organization.

    agent_sessions       organization_id, id, agent, model (the agent's), created_at
    agent_session_steps  organization_id, session_id, request_id (the run), seq (in
                         the run), step (a `SessionStep` as JSON), created_at (the run's)

A session id is the caller's to choose, so every key starts with the
organization: two organizations using the same id never see each other's steps.
A run's steps go in with one statement and no lookup (runs are ordered by their
start), written in the background (`record`): a run does not wait for its
recording, and reads of the session on this replica wait for its pending writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf import json_format

from server.errors import NotFound
from server.storage.database import Database
from server.storage.migrations import Migration
from tokenwire.sessions.v1 import sessions_pb2

log = logging.getLogger("tokenwire.agents")

MIGRATIONS = (
    Migration(
        "agent_sessions",
        1,
        "CREATE TABLE agent_sessions ("
        " organization_id TEXT NOT NULL, id TEXT NOT NULL, agent TEXT NOT NULL,"
        " model TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,"
        " PRIMARY KEY (organization_id, id));\n"
        "CREATE TABLE agent_session_steps ("
        " organization_id TEXT NOT NULL, session_id TEXT NOT NULL, request_id TEXT NOT NULL,"
        " seq INTEGER NOT NULL, step TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,"
        " PRIMARY KEY (organization_id, session_id, request_id, seq))",
    ),
)


@dataclass(frozen=True, slots=True)
class SessionHead:
    id: str
    agent: str
    model: str
    created_at: float


def not_found(session_id: str) -> NotFound:
    return NotFound(
        f"Session '{session_id}' was not found.", param="session", code="session_not_found"
    )


class SessionStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: dict[tuple[str, str], asyncio.Future[None]] = {}

    def record(
        self, organization_id: str, head: SessionHead, steps: Sequence[sessions_pb2.SessionStep]
    ) -> None:
        """`append` in the background, after the session's earlier pending writes."""
        key = (organization_id, head.id)
        before = self._pending.get(key)
        write = asyncio.ensure_future(self._append_after(before, organization_id, head, steps))
        self._pending[key] = write
        write.add_done_callback(lambda done: self._settle(key, done))

    async def _append_after(
        self,
        before: asyncio.Future[None] | None,
        organization_id: str,
        head: SessionHead,
        steps: Sequence[sessions_pb2.SessionStep],
    ) -> None:
        if before is not None:
            await asyncio.wait([before])
        try:
            await self.append(organization_id, head, steps)
        except Exception:  # the recording is lost, never the answer
            log.exception("could not record session %s", head.id)

    def _settle(self, key: tuple[str, str], done: asyncio.Future[None]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]

    async def settled(self, organization_id: str, session_id: str) -> None:
        """Wait for the session's pending writes on this replica."""
        pending = self._pending.get((organization_id, session_id))
        if pending is not None:
            await asyncio.wait([pending])

    async def settled_all(self) -> None:
        """Wait for every pending write on this replica."""
        if self._pending:
            await asyncio.wait(list(self._pending.values()))

    aclose = settled_all  # at stop, before the database closes

    async def append(
        self, organization_id: str, head: SessionHead, steps: Sequence[sessions_pb2.SessionStep]
    ) -> None:
        """Add one run's steps to the session (made if new)."""
        await self.db.execute(
            "INSERT INTO agent_sessions (organization_id, id, agent, model, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (organization_id, id) DO NOTHING",
            organization_id,
            head.id,
            head.agent,
            head.model,
            head.created_at,
        )
        await self.db.executemany(
            "INSERT INTO agent_session_steps (organization_id, session_id, request_id, seq,"
            " step, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (organization_id, head.id, s.request_id, i, _dumps(s), head.created_at)
                for i, s in enumerate(steps)
            ],
        )

    async def head(self, organization_id: str, session_id: str) -> SessionHead:
        await self.settled(organization_id, session_id)
        row = await self.db.fetchrow(
            "SELECT id, agent, model, created_at FROM agent_sessions"
            " WHERE organization_id = ? AND id = ?",
            organization_id,
            session_id,
        )
        if row is None:
            raise not_found(session_id)
        return SessionHead(row["id"], row["agent"], row["model"], float(row["created_at"]))

    async def get(self, organization_id: str, session_id: str) -> sessions_pb2.Session:
        """The session with every step, in order."""
        head = await self.head(organization_id, session_id)
        rows = await self.db.fetch(
            "SELECT step FROM agent_session_steps WHERE organization_id = ? AND session_id = ?"
            " ORDER BY created_at, request_id, seq",
            organization_id,
            session_id,
        )
        session = _session(head)
        for row in rows:
            json_format.ParseDict(json.loads(row["step"]), session.steps.add())
        return session

    async def page(self, organization_id: str, limit: int) -> list[sessions_pb2.Session]:
        """The newest sessions, without their steps."""
        await self.settled_all()
        rows = await self.db.fetch(
            "SELECT id, agent, model, created_at FROM agent_sessions WHERE organization_id = ?"
            " ORDER BY created_at DESC, id LIMIT ?",
            organization_id,
            limit,
        )
        heads = [SessionHead(r["id"], r["agent"], r["model"], float(r["created_at"])) for r in rows]
        return [_session(h) for h in heads]


def _session(head: SessionHead) -> sessions_pb2.Session:
    return sessions_pb2.Session(
        id=head.id, object="session", agent=head.agent, created_at=head.created_at
    )


def _dumps(step: sessions_pb2.SessionStep) -> str:
    return json.dumps(json_format.MessageToDict(step, preserving_proto_field_name=True))
