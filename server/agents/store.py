"""Agents and their versions on `Database`, always within one organization.

    agents          id (UUID), organization_id, name (unique in the org),
                    version (the latest), created_at
    agent_versions  agent_id, version, definition (the `Agent` as JSON), created_at

Every query names the organization, so another organization's agent is never
found. An update takes the row lock first (`UPDATE … version + 1`), so two
updates never build on the same version.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from server.agents import validate
from server.errors import Conflict, NotFound
from server.rpc.updates import merge, output_only
from server.storage.database import Database, Row
from server.storage.migrations import Migration
from server.templates.store import ref_clause
from tokenwire.agents.v1 import agents_pb2

Agent = agents_pb2.Agent

MIGRATIONS = (
    Migration(
        "agents",
        1,
        "CREATE TABLE agents ("
        " id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, name TEXT NOT NULL,"
        " version INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL,"
        " UNIQUE (organization_id, name));\n"
        "CREATE TABLE agent_versions ("
        " agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,"
        " version INTEGER NOT NULL, definition TEXT NOT NULL,"
        " created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (agent_id, version))",
    ),
)

_SELECT = (
    "SELECT a.id, a.name, a.created_at, v.version, v.definition, v.created_at AS updated_at"
    " FROM agents a JOIN agent_versions v ON v.agent_id = a.id"
)


def not_found(ref: str) -> NotFound:
    return NotFound(f"Agent '{ref}' was not found.", param="agent", code="agent_not_found")


class AgentStore:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    async def create(self, organization_id: str, agent: Agent) -> Agent:
        """Store version 1 of a new agent; 409 when its name is taken."""
        validate.agent(agent)
        agent_id, now = str(uuid.uuid4()), self._clock()
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(
                "INSERT INTO agents (id, organization_id, name, version, created_at)"
                " VALUES (?, ?, ?, 1, ?) ON CONFLICT (organization_id, name) DO NOTHING"
                " RETURNING id",
                agent_id,
                organization_id,
                agent.name,
                now,
            )
            if row is None:
                raise _taken(agent.name)
            await _write_version(tx, agent_id, 1, agent, now)
        return await self.get(organization_id, agent_id)

    async def get(self, organization_id: str, ref: str, version: int | None = None) -> Agent:
        """The latest version (or `version`) of the agent named or identified by `ref`."""
        clause, value = ref_clause(ref, "a")
        wanted = "v.version = ?" if version is not None else "v.version = a.version"
        args: list[Any] = [organization_id, value, *([version] if version is not None else [])]
        row = await self.db.fetchrow(
            f"{_SELECT} WHERE a.organization_id = ? AND {clause} AND {wanted}", *args
        )
        if row is None:
            raise not_found(ref)
        return _agent(row)

    async def page(
        self, organization_id: str, limit: int, after: str | None = None
    ) -> tuple[list[Agent], bool]:
        """A page of agents by name, each at its latest version, and whether more follow."""
        rows = await self.db.fetch(
            f"{_SELECT} WHERE a.organization_id = ? AND v.version = a.version AND a.name > ?"
            " ORDER BY a.name LIMIT ?",
            organization_id,
            after or "",
            limit + 1,
        )
        return [_agent(r) for r in rows[:limit]], len(rows) > limit

    async def update(self, organization_id: str, ref: str, changes: Agent) -> Agent:
        """Write the next version: the latest with the fields `changes` sets replaced."""
        clause, value = ref_clause(ref, "agents")
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(
                "UPDATE agents SET version = version + 1"
                f" WHERE organization_id = ? AND {clause} RETURNING id, version",
                organization_id,
                value,
            )
            if row is None:
                raise not_found(ref)
            agent_id, version = row["id"], row["version"]
            current = await tx.fetchrow(
                f"{_SELECT} WHERE a.id = ? AND v.version = ?", agent_id, version - 1
            )
            assert current is not None  # the version before the one being written
            merged = merge(_agent(current), changes)
            validate.agent(merged)
            if merged.name != current["name"]:
                await _rename(tx, organization_id, agent_id, merged.name)
            await _write_version(tx, agent_id, version, merged, self._clock())
        return await self.get(organization_id, agent_id)

    async def delete(self, organization_id: str, ref: str) -> str:
        """Delete the agent with all its versions; returns its id."""
        clause, value = ref_clause(ref, "a")
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(
                f"SELECT a.id FROM agents a WHERE a.organization_id = ? AND {clause}",
                organization_id,
                value,
            )
            if row is None:
                raise not_found(ref)
            await tx.execute("DELETE FROM agent_versions WHERE agent_id = ?", row["id"])
            await tx.execute("DELETE FROM agents WHERE id = ?", row["id"])
            return str(row["id"])


def _taken(name: str) -> Conflict:
    return Conflict(f"An agent named '{name}' already exists in this organization.", param="name")


async def _rename(db: Database, organization_id: str, agent_id: str, name: str) -> None:
    taken = await db.fetchrow(
        "SELECT id FROM agents WHERE organization_id = ? AND name = ?", organization_id, name
    )
    if taken is not None:
        raise _taken(name)
    await db.execute("UPDATE agents SET name = ? WHERE id = ?", name, agent_id)


async def _write_version(
    db: Database, agent_id: str, version: int, agent: Agent, now: float
) -> None:
    definition: Message = Agent()
    definition.CopyFrom(agent)
    for name in output_only(Agent):
        definition.ClearField(name)
    text = json.dumps(json_format.MessageToDict(definition, preserving_proto_field_name=True))
    await db.execute(
        "INSERT INTO agent_versions (agent_id, version, definition, created_at)"
        " VALUES (?, ?, ?, ?)",
        agent_id,
        version,
        text,
        now,
    )


def _agent(row: Row) -> Agent:
    agent = json_format.ParseDict(json.loads(row["definition"]), Agent())
    agent.id, agent.object, agent.name = row["id"], "agent", row["name"]
    agent.version = row["version"]
    agent.created_at, agent.updated_at = int(row["created_at"]), int(row["updated_at"])
    return agent
