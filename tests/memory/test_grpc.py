"""The memory service through a real grpc.aio server on port 0, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import TypeAlias

import grpc
import pytest

from server.keys.auth import AdminCredential
from server.memory.service import MemoryServicer
from server.memory.store import MIGRATIONS, MemoryStore
from server.pipeline.context import OpenAuthenticator
from server.rpc.access import Access
from server.storage.database import Database
from server.storage.migrations import migrate
from tests.templates.stack import grpc_server, org
from tests.templates.test_grpc import error_info
from tokenwire.memory.v1 import memory_pb2 as pb
from tokenwire.memory.v1 import memory_pb2_grpc

ACME, GLOBEX = org("acme"), org("globex")
# The async stub is declared only in the .pyi, so the alias stays a string at runtime.
Stub: TypeAlias = "memory_pb2_grpc.MemoryServiceAsyncStub"


@pytest.fixture
async def stub(database: Database) -> AsyncIterator[Stub]:
    await migrate(database, MIGRATIONS)
    servicer = MemoryServicer(
        MemoryStore(database), Access(OpenAuthenticator(), AdminCredential(None))
    )
    server, target = await grpc_server(
        [(memory_pb2_grpc.add_MemoryServiceServicer_to_server, servicer)]
    )
    async with grpc.aio.insecure_channel(target) as channel:
        yield memory_pb2_grpc.MemoryServiceStub(channel)
    await server.stop(None)


async def add(
    stub: Stub,
    content: str,
    metadata: tuple[tuple[str, str], ...] = ACME,
    user: str | None = None,
) -> pb.Memory:
    request = pb.AddMemoryRequest(memory=pb.Memory(content=content, user=user))
    return (await stub.AddMemory(request, metadata=metadata)).memory


async def test_add_get_list_search_delete(stub: Stub) -> None:
    m = await add(stub, "Deploys happen on Tuesdays.", user="ada")
    assert (m.object, m.user, m.source) == ("memory", "ada", pb.MEMORY_SOURCE_API)
    assert not m.HasField("session_id") and not m.HasField("score")
    got = await stub.GetMemory(pb.GetMemoryRequest(memory=m.id), metadata=ACME)
    assert got.memory == m
    listed = await stub.ListMemories(pb.ListMemoriesRequest(user="ada"), metadata=ACME)
    assert [x.id for x in listed.data] == [m.id] and not listed.has_more
    found = await stub.SearchMemories(
        pb.SearchMemoriesRequest(query="when are deploys?", user="ada"), metadata=ACME
    )
    assert [x.id for x in found.data] == [m.id] and found.data[0].score > 0
    deleted = await stub.DeleteMemory(pb.DeleteMemoryRequest(memory=m.id), metadata=ACME)
    assert (deleted.id, deleted.object, deleted.deleted) == (m.id, "memory.deleted", True)
    listed = await stub.ListMemories(pb.ListMemoriesRequest(), metadata=ACME)
    assert list(listed.data) == []


async def test_organizations_never_see_each_others_memories(stub: Stub) -> None:
    theirs = await add(stub, "Globex codename is Nightingale.", GLOBEX)
    mine = await add(stub, "Acme codename is Falcon.")
    for call in (
        stub.GetMemory(pb.GetMemoryRequest(memory=theirs.id), metadata=ACME),
        stub.DeleteMemory(pb.DeleteMemoryRequest(memory=theirs.id), metadata=ACME),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    found = await stub.SearchMemories(
        pb.SearchMemoriesRequest(query="Globex codename Nightingale"), metadata=ACME
    )
    assert [x.id for x in found.data] == [mine.id]
    listed = await stub.ListMemories(pb.ListMemoriesRequest(), metadata=ACME)
    assert [x.id for x in listed.data] == [mine.id]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListMemories(pb.ListMemoriesRequest(after=theirs.id), metadata=ACME)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    still = await stub.GetMemory(pb.GetMemoryRequest(memory=theirs.id), metadata=GLOBEX)
    assert still.memory == theirs


async def test_settings_round_trip_per_organization(stub: Stub) -> None:
    got = await stub.GetMemorySettings(pb.GetMemorySettingsRequest(), metadata=ACME)
    assert not got.settings.auto_store
    wanted = pb.UpdateMemorySettingsRequest(settings=pb.MemorySettings(auto_store=True))
    updated = await stub.UpdateMemorySettings(wanted, metadata=ACME)
    assert updated.settings.auto_store
    assert (
        await stub.GetMemorySettings(pb.GetMemorySettingsRequest(), metadata=ACME)
    ).settings.auto_store
    other = await stub.GetMemorySettings(pb.GetMemorySettingsRequest(), metadata=GLOBEX)
    assert not other.settings.auto_store


async def test_refusals_name_the_field(stub: Stub) -> None:
    cases: list[tuple[Awaitable[object], str | None]] = [
        (stub.ListMemories(pb.ListMemoriesRequest()), None),
        (
            stub.AddMemory(pb.AddMemoryRequest(memory=pb.Memory(content=" ")), metadata=ACME),
            "content",
        ),
        (stub.SearchMemories(pb.SearchMemoriesRequest(query=""), metadata=ACME), "query"),
        (
            stub.SearchMemories(pb.SearchMemoriesRequest(query="x", limit=101), metadata=ACME),
            "limit",
        ),
    ]
    for call, param in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = error_info(caught.value)
        if param is None:
            assert info.reason == "organization_required"
        else:
            assert info.metadata["param"] == param
