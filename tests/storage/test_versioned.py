"""The versioned-record store shared by templates and agents, on SQLite and on the real
PostgreSQL, through a third kind of its own (`snippets`): what a kind parametrizes (tables,
columns, errors' wording) and what every kind gets (versions, locks, masks, isolation)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from server.agents.store import KIND as AGENTS
from server.agents.store import AgentStore
from server.errors import Conflict, InvalidRequest, NotFound
from server.storage.database import Database, Row
from server.storage.migrations import Migration, migrate
from server.storage.versioned import MAX_PAGE, Kind, VersionedStore
from server.templates.store import KIND as TEMPLATES
from tokenwire.agents.v1 import agents_pb2

Agent = agents_pb2.Agent

SNIPPET_TABLES = Migration(
    "snippets",
    1,
    "CREATE TABLE snippets ("
    " id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, name TEXT NOT NULL,"
    " version INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL,"
    " UNIQUE (organization_id, name));\n"
    "CREATE TABLE snippet_versions ("
    " snippet_id TEXT NOT NULL REFERENCES snippets (id) ON DELETE CASCADE,"
    " version INTEGER NOT NULL, model TEXT NOT NULL, instructions TEXT,"
    " created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (snippet_id, version))",
)


def _columns(a: Agent) -> tuple[str, str | None]:
    return a.model, a.instructions if a.HasField("instructions") else None


def _snippet(row: Row) -> Agent:
    a = Agent(model=row["model"])
    if row["instructions"] is not None:
        a.instructions = row["instructions"]
    return a


def _validate(a: Agent) -> None:
    if not a.model:
        raise InvalidRequest("'model' is required.", param="model")


SNIPPETS = Kind(
    noun="snippet",
    table="snippets",
    message=Agent,
    columns=("model", "instructions"),
    to_columns=_columns,
    from_columns=_snippet,
    validate=_validate,
)


class SnippetStore(VersionedStore[Agent]):
    kind = SNIPPETS


@pytest.fixture
async def store(database: Database) -> AsyncIterator[VersionedStore[Agent]]:
    await migrate(database, (SNIPPET_TABLES,))
    ticks = itertools.count(1_000)
    yield SnippetStore(database, clock=lambda: float(next(ticks)))


async def test_a_kind_is_its_own_tables_and_columns(
    store: VersionedStore[Agent], database: Database
) -> None:
    created = await store.create("acme", Agent(name="s", model="m", instructions="Be brief."))
    assert (created.object, created.version, created.created_at) == ("snippet", 1, 1000)
    assert created.instructions == "Be brief." and created.model == "m"
    assert await store.get("acme", created.id.upper()) == created
    rows = await database.fetch(
        "SELECT version, model, instructions FROM snippet_versions WHERE snippet_id = ?",
        created.id,
    )
    assert rows == [{"version": 1, "model": "m", "instructions": "Be brief."}]
    second = await store.update("acme", "s", Agent(model="m2"))
    assert (second.version, second.model, second.instructions) == (2, "m2", "Be brief.")
    assert (second.created_at, second.updated_at) == (1000, 1001)
    assert await store.get("acme", "s", version=1) == created


async def test_errors_name_the_kind(store: VersionedStore[Agent]) -> None:
    await store.create("acme", Agent(name="s", model="m"))
    with pytest.raises(NotFound) as missing:
        await store.get("acme", "s", version=7)
    assert (missing.value.message, missing.value.param, missing.value.code) == (
        "Snippet 's' version 7 was not found.",
        "snippet",
        "snippet_not_found",
    )
    with pytest.raises(Conflict) as taken:
        await store.create("acme", Agent(name="s", model="m"))
    assert taken.value.message == "A snippet named 's' already exists in this organization."
    assert AgentStore(store.db).taken("x").message.startswith("An agent named")


async def test_concurrent_updates_never_build_on_the_same_version(
    store: VersionedStore[Agent],
) -> None:
    await store.create("acme", Agent(name="s", model="m0"))
    written = await asyncio.gather(
        *(store.update("acme", "s", Agent(model=f"m{i}")) for i in range(1, 9))
    )
    assert sorted(a.version for a in written) == list(range(2, 10))
    latest = await store.get("acme", "s")
    assert latest.version == 9
    for a in written:  # each version holds exactly the change that wrote it
        assert (await store.get("acme", "s", version=a.version)).model == a.model


async def test_a_refused_update_leaves_no_version(store: VersionedStore[Agent]) -> None:
    await store.create("acme", Agent(name="s", model="m"))
    await store.create("acme", Agent(name="taken", model="m"))
    with pytest.raises(Conflict):
        await store.update("acme", "s", Agent(name="taken"))
    with pytest.raises(InvalidRequest):
        await store.update("acme", "s", Agent(model="x"), ("model", "version"))
    with pytest.raises(InvalidRequest):
        await store.update("acme", "s", Agent(), ("model",))  # masked empty: fails validation
    assert (await store.get("acme", "s")).version == 1


async def test_other_organizations_and_deleted_records_are_not_found(
    store: VersionedStore[Agent], database: Database
) -> None:
    theirs = await store.create("globex", Agent(name="s", model="m"))
    await store.update("globex", "s", Agent(model="m2"))
    for ref in (theirs.id, "s"):
        for call in (
            store.get("acme", ref),
            store.update("acme", ref, Agent(model="mine")),
            store.delete("acme", ref),
        ):
            with pytest.raises(NotFound):
                await call
    assert await store.delete("globex", "s") == theirs.id
    left = await database.fetch("SELECT version FROM snippet_versions")
    assert left == []


async def test_pages_are_clamped(store: VersionedStore[Agent]) -> None:
    for name in ("b", "a", "c"):
        await store.create("acme", Agent(name=name, model="m"))
    page, more = await store.page("acme", limit=0)
    assert [a.name for a in page] == ["a"] and more
    page, more = await store.page("acme", limit=MAX_PAGE + 1, after="a")
    assert [a.name for a in page] == ["b", "c"] and not more


def test_maskable_fields_are_the_ones_clients_write() -> None:
    assert TEMPLATES.maskable == (
        "name",
        "description",
        "messages",
        "variables",
        "model",
        "parameters",
    )
    assert AGENTS.maskable == (
        "name",
        "description",
        "model",
        "models",
        "provider",
        "instructions",
        "template",
        "variables",
        "tools",
        "limits",
        "memory",
    )
