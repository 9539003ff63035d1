"""Agents and their versions on `Database`, always within one organization.

    agents          id (UUID), organization_id, name (unique in the org),
                    version (the latest), created_at
    agent_versions  agent_id, version, definition (the `Agent` as JSON), created_at

The versioned-record SQL (names, versions, renames, paging, isolation) is
`server/storage/versioned.py`'s; an agent's version is its whole definition in
one JSON column, output-only fields left out.
"""

from __future__ import annotations

import json

from google.protobuf import json_format
from google.protobuf.message import Message

from server.agents import validate
from server.rpc.updates import output_only
from server.storage.database import Row
from server.storage.migrations import Migration
from server.storage.versioned import Kind, VersionedStore
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


def _definition(agent: Agent) -> tuple[str]:
    written: Message = Agent()  # by name: the generated stubs type field names as literals
    written.CopyFrom(agent)
    for name in output_only(Agent):
        written.ClearField(name)
    return (json.dumps(json_format.MessageToDict(written, preserving_proto_field_name=True)),)


def _agent(row: Row) -> Agent:
    return json_format.ParseDict(json.loads(row["definition"]), Agent())


KIND = Kind(
    noun="agent",
    table="agents",
    message=Agent,
    columns=("definition",),
    to_columns=_definition,
    from_columns=_agent,
    validate=validate.agent,
)


class AgentStore(VersionedStore[Agent]):
    kind = KIND
