"""The memory store and its full-text retrievers on SQLite (FTS5) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import count

import pytest

from server.errors import InvalidRequest, NotFound
from server.memory.model import Scope, Settings
from server.memory.retrieval import Fts5Retriever, PostgresRetriever, terms
from server.memory.store import MIGRATIONS, MemoryStore
from server.storage.database import Database
from server.storage.migrations import migrate


@pytest.fixture
async def store(database: Database) -> AsyncIterator[MemoryStore]:
    await migrate(database, MIGRATIONS)
    ticks = count(1_700_000_000)
    yield MemoryStore(database, clock=lambda: float(next(ticks)))


async def test_the_dialects_retriever_is_used(store: MemoryStore, database: Database) -> None:
    expected = PostgresRetriever if database.dialect == "postgres" else Fts5Retriever
    assert isinstance(store.retriever, expected)


async def test_add_get_and_delete(store: MemoryStore) -> None:
    m = await store.add("acme", "  Deploys happen on Tuesdays.  ", user="ada", session_id="s1")
    assert (m.content, m.user, m.session_id, m.source) == (
        "Deploys happen on Tuesdays.",
        "ada",
        "s1",
        "api",
    )
    assert await store.get("acme", m.id) == m
    assert await store.delete("acme", m.id) == m
    with pytest.raises(NotFound):
        await store.get("acme", m.id)
    assert await store.search(Scope("acme", "ada", "s1"), "deploys tuesdays") == []


async def test_search_ranks_the_relevant_first_with_stemming(store: MemoryStore) -> None:
    await store.add("acme", "The office plants need watering.")
    best = await store.add("acme", "Ada's favourite colours are teal and orange; teal most of all.")
    other = await store.add("acme", "The logo colour is orange.")
    found = await store.search(Scope("acme"), "What colour is Ada's favourite? teal?")
    assert [s.memory.id for s in found] == [best.id, other.id]
    assert found[0].score > found[1].score > 0


async def test_query_syntax_in_the_text_is_only_words(store: MemoryStore) -> None:
    m = await store.add("acme", "Invoices go out at month end.")
    hostile = "invoices\" OR * NEAR(a b) : ( ) ^ - + & | ! <-> ' \\ content:x AND NOT"
    assert [s.memory.id for s in await store.search(Scope("acme"), hostile)] == [m.id]
    assert await store.search(Scope("acme"), "the and of what is") == []
    assert await store.search(Scope("acme"), '"*:&|!()') == []


def test_terms_drop_stop_words_and_punctuation() -> None:
    assert terms("What's the BEST deploy-day, Ada? Tuesday!") == [
        "best",
        "deploy",
        "day",
        "ada",
        "tuesday",
    ]


async def test_search_never_crosses_organizations(store: MemoryStore) -> None:
    await store.add("globex", "Project Nightingale launches in March.")
    mine = await store.add("acme", "Project Falcon launches in May.")
    assert await store.search(Scope("acme"), "nightingale") == []
    found = await store.search(Scope("acme"), "project launches nightingale")
    assert [s.memory.id for s in found] == [mine.id]
    assert [s.memory.organization_id for s in await store.search(Scope("globex"), "falcon")] == []


async def test_narrowed_memories_reach_only_their_user_or_session(store: MemoryStore) -> None:
    everyone = await store.add("acme", "Support hours are nine to five.")
    ada = await store.add("acme", "Ada's support tier is gold.", user="ada")
    session = await store.add("acme", "In this chat support speaks French.", session_id="s1")

    async def seen(user: str | None, session_id: str | None) -> set[str]:
        found = await store.search(Scope("acme", user, session_id), "support")
        return {s.memory.id for s in found}

    assert await seen(None, None) == {everyone.id}
    assert await seen("ada", None) == {everyone.id, ada.id}
    assert await seen("bob", "s1") == {everyone.id, session.id}
    assert await seen("ada", "s1") == {everyone.id, ada.id, session.id}


async def test_pages_newest_first_with_filters(store: MemoryStore) -> None:
    made = [await store.add("acme", f"note {i}", user="ada" if i % 2 else None) for i in range(5)]
    await store.add("globex", "not yours")
    page, more = await store.page("acme", limit=2)
    assert [m.content for m in page] == ["note 4", "note 3"] and more
    page, more = await store.page("acme", limit=2, after=page[-1].id)
    assert [m.content for m in page] == ["note 2", "note 1"] and more
    page, more = await store.page("acme", limit=2, after=page[-1].id)
    assert [m.content for m in page] == ["note 0"] and not more
    page, _ = await store.page("acme", user="ada")
    assert [m.id for m in page] == [made[3].id, made[1].id]
    with pytest.raises(InvalidRequest):
        theirs = (await store.page("globex"))[0][0]
        await store.page("acme", after=theirs.id)


async def test_another_organizations_memory_cannot_be_fetched_or_deleted(
    store: MemoryStore,
) -> None:
    theirs = await store.add("globex", "globex secret")
    with pytest.raises(NotFound):
        await store.get("acme", theirs.id)
    with pytest.raises(NotFound):
        await store.delete("acme", theirs.id)
    assert await store.get("globex", theirs.id) == theirs


async def test_settings_are_per_organization(store: MemoryStore) -> None:
    assert await store.settings("acme") == Settings(auto_store=False)
    await store.set_settings("acme", Settings(auto_store=True))
    assert await store.settings("acme") == Settings(auto_store=True)
    assert await store.settings("globex") == Settings(auto_store=False)
    await store.set_settings("acme", Settings(auto_store=False))
    assert await store.settings("acme") == Settings(auto_store=False)


@pytest.mark.parametrize(
    ("content", "user", "session_id", "param"),
    [
        ("   ", None, None, "content"),
        ("x" * 8001, None, None, "content"),
        ("ok", "u" * 257, None, "user"),
        ("ok", None, "s" * 129, "session_id"),
    ],
)
async def test_invalid_memories_are_refused(
    store: MemoryStore, content: str, user: str | None, session_id: str | None, param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await store.add("acme", content, user=user, session_id=session_id)
    assert caught.value.param == param
