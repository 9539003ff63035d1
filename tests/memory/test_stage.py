"""The memory stage on a `RequestContext`, with the real store on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.memory.model import Settings
from server.memory.stage import IDS_HEADER, MemoryStage, RecallConfig
from server.memory.store import MIGRATIONS, MemoryStore
from server.storage.database import Database
from server.storage.migrations import migrate
from tests.templates.stack import context, record, system_message, user_message
from tokenwire.chat.v1 import chat_pb2, message_pb2


@pytest.fixture
async def store(database: Database) -> AsyncIterator[MemoryStore]:
    await migrate(database, MIGRATIONS)
    yield MemoryStore(database)


def ask(*texts: str, **fields: object) -> chat_pb2.CreateChatCompletionRequest:
    messages = [user_message(t) for t in texts]
    return chat_pb2.CreateChatCompletionRequest(messages=messages, **fields)  # type: ignore[arg-type]


async def test_recalls_into_one_system_message_first(store: MemoryStore) -> None:
    deploy = await store.add("acme", "Deploys happen on Tuesdays at 14:00 UTC.")
    await store.add("acme", "The cafeteria serves pizza on Fridays.")
    request = ask("When do deploys happen?")
    request.messages.insert(0, system_message("You are terse."))
    ctx = context(request)
    await MemoryStage(store).before(ctx)
    first = ctx.request.messages[0]
    assert first.role == message_pb2.ROLE_SYSTEM
    assert first.content_text == (
        f'Relevant memories:\n<memory id="{deploy.id}">Deploys happen on Tuesdays at 14:00 UTC.'
        "</memory>"
    )
    assert [m.content_text for m in ctx.request.messages[1:]] == [
        "You are terse.",
        "When do deploys happen?",
    ]
    assert ctx.memory_ids == [deploy.id]
    assert ctx.headers[IDS_HEADER] == deploy.id


async def test_several_ids_in_rank_order(store: MemoryStore) -> None:
    a = await store.add("acme", "Falcon launch is in May; Falcon is the rocket.")
    b = await store.add("acme", "The launch party is at the hangar.")
    ctx = context(ask("Tell me about the Falcon launch"))
    await MemoryStage(store).before(ctx)
    assert ctx.memory_ids == [a.id, b.id]
    assert ctx.headers[IDS_HEADER] == f"{a.id},{b.id}"


async def test_nothing_relevant_adds_nothing(store: MemoryStore) -> None:
    await store.add("acme", "Deploys happen on Tuesdays.")
    ctx = context(ask("Write a haiku about autumn"))
    await MemoryStage(store).before(ctx)
    assert len(ctx.request.messages) == 1 and ctx.memory_ids == [] and IDS_HEADER not in ctx.headers


async def test_another_organizations_memories_are_never_recalled(store: MemoryStore) -> None:
    await store.add("globex", "Globex's launch code is swordfish.")
    for organization in ("acme", "", None):
        ctx = context(ask("What is the launch code? swordfish globex"), organization=organization)
        await MemoryStage(store).before(ctx)
        assert ctx.memory_ids == [] and len(ctx.request.messages) == 1


async def test_memory_off_by_metadata_or_header(store: MemoryStore) -> None:
    await store.add("acme", "Deploys happen on Tuesdays.")
    by_body = context(ask("deploys?", metadata={"memory": "off"}))
    by_header = context(ask("deploys?"), metadata={"x-tokenwire-memory": "OFF"})
    for ctx in (by_body, by_header):
        await MemoryStage(store).before(ctx)
        assert ctx.memory_ids == [] and len(ctx.request.messages) == 1
    on = context(ask("deploys?", metadata={"memory": "on"}))
    await MemoryStage(store).before(on)
    assert len(on.memory_ids) == 1


async def test_budget_limits_what_is_recalled(store: MemoryStore) -> None:
    await store.add("acme", "Deploys " + "long " * 200)
    short = await store.add("acme", "Deploys are on Tuesdays.")
    ctx = context(ask("deploys"))
    await MemoryStage(store, RecallConfig(budget_tokens=40)).before(ctx)
    assert ctx.memory_ids == [short.id]
    ctx = context(ask("deploys"))
    await MemoryStage(store, RecallConfig(budget_tokens=0)).before(ctx)
    assert ctx.memory_ids == []


async def test_user_and_session_narrowing_applies_to_recall(store: MemoryStore) -> None:
    ada = await store.add("acme", "Ada's billing plan is enterprise.", user="ada")
    s1 = await store.add("acme", "This session's billing question is about VAT.", session_id="s1")
    as_bob = context(ask("billing plan?", user="bob"))
    await MemoryStage(store).before(as_bob)
    assert as_bob.memory_ids == []
    as_ada = context(ask("billing plan?", user="ada", session_id="s1"))
    await MemoryStage(store).before(as_ada)
    assert set(as_ada.memory_ids) == {ada.id, s1.id}
    by_header = context(ask("billing plan?"), metadata={"x-session-id": "s1"})
    await MemoryStage(store).before(by_header)
    assert by_header.memory_ids == [s1.id]


async def test_auto_store_after_success_when_enabled(store: MemoryStore) -> None:
    stage = MemoryStage(store)
    ctx = context(ask("older message", "I prefer metric units.", user="ada"))
    await stage.after(ctx, record(ctx))
    assert (await store.page("acme"))[0] == []  # off by default
    await store.set_settings("acme", Settings(auto_store=True))
    await stage.after(ctx, record(ctx, status="provider_unavailable"))
    assert (await store.page("acme"))[0] == []  # failed requests store nothing
    await stage.after(ctx, record(ctx))
    await stage.after(ctx, record(ctx))  # the same text twice is kept once
    stored = (await store.page("acme"))[0]
    assert [(m.content, m.user, m.source) for m in stored] == [
        ("I prefer metric units.", "ada", "auto")
    ]
    assert (await store.page("globex"))[0] == []


async def test_auto_store_respects_memory_off_and_organization(store: MemoryStore) -> None:
    await store.set_settings("acme", Settings(auto_store=True))
    stage = MemoryStage(store)
    off = context(ask("secret thing", metadata={"memory": "off"}))
    await stage.after(off, record(off))
    nobody = context(ask("secret thing"), organization=None)
    await stage.after(nobody, record(nobody))
    assert (await store.page("acme"))[0] == []
