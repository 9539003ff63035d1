"""The `MemoryService` servicer: the caller's organization's memories over gRPC and REST."""

from __future__ import annotations

from typing import Any, cast

from grpc.aio import ServicerContext

from gateway.transcode import enum_names
from server.errors import InvalidRequest
from server.memory.model import Memory, Scope, Settings
from server.memory.store import MemoryStore
from server.rpc.access import Access
from server.rpc.boundary import CALL
from server.rpc.paging import page_limit
from tokenwire.memory.v1 import memory_pb2 as pb
from tokenwire.memory.v1 import memory_pb2_grpc

SERVICE_NAME = "tokenwire.memory.v1.MemoryService"
DESCRIPTOR = pb.DESCRIPTOR.services_by_name["MemoryService"]
MAX_QUERY = 4000

_SOURCES = cast(
    "dict[str, pb.MemorySource.ValueType]", enum_names(pb.MemorySource.DESCRIPTOR).by_name
)


def memory_message(memory: Memory, score: float | None = None) -> pb.Memory:
    out = pb.Memory(
        id=memory.id,
        object="memory",
        content=memory.content,
        created_at=int(memory.created_at),
        source=_SOURCES[memory.source],
    )
    if memory.user is not None:
        out.user = memory.user
    if memory.session_id is not None:
        out.session_id = memory.session_id
    if score is not None:
        out.score = score
    return out


def _optional(message: Any, name: str) -> str | None:
    return getattr(message, name) if message.HasField(name) else None


class MemoryServicer(memory_pb2_grpc.MemoryServiceServicer):
    def __init__(self, store: MemoryStore, access: Access) -> None:
        self._store = store
        self._access = access

    async def AddMemory(
        self,
        request: pb.AddMemoryRequest,
        context: ServicerContext[pb.AddMemoryRequest, pb.AddMemoryResponse],
    ) -> pb.AddMemoryResponse:
        org = await self._access.organization(CALL.get())
        m = request.memory
        user, session = _optional(m, "user"), _optional(m, "session_id")
        memory = await self._store.add(org, m.content, user=user, session_id=session)
        return pb.AddMemoryResponse(memory=memory_message(memory))

    async def GetMemory(
        self,
        request: pb.GetMemoryRequest,
        context: ServicerContext[pb.GetMemoryRequest, pb.GetMemoryResponse],
    ) -> pb.GetMemoryResponse:
        org = await self._access.organization(CALL.get())
        memory = await self._store.get(org, request.memory)
        return pb.GetMemoryResponse(memory=memory_message(memory))

    async def ListMemories(
        self,
        request: pb.ListMemoriesRequest,
        context: ServicerContext[pb.ListMemoriesRequest, pb.ListMemoriesResponse],
    ) -> pb.ListMemoriesResponse:
        org = await self._access.organization(CALL.get())
        page, more = await self._store.page(
            org,
            user=_optional(request, "user"),
            session_id=_optional(request, "session_id"),
            limit=page_limit(request, 20),
            after=_optional(request, "after"),
        )
        data = [memory_message(m) for m in page]
        return pb.ListMemoriesResponse(object="list", data=data, has_more=more)

    async def SearchMemories(
        self,
        request: pb.SearchMemoriesRequest,
        context: ServicerContext[pb.SearchMemoriesRequest, pb.SearchMemoriesResponse],
    ) -> pb.SearchMemoriesResponse:
        org = await self._access.organization(CALL.get())
        if not request.query.strip() or len(request.query) > MAX_QUERY:
            raise InvalidRequest(f"'query' must hold 1 to {MAX_QUERY} characters.", param="query")
        scope = Scope(org, _optional(request, "user"), _optional(request, "session_id"))
        found = await self._store.search(scope, request.query, page_limit(request, 10))
        data = [memory_message(s.memory, s.score) for s in found]
        return pb.SearchMemoriesResponse(object="list", data=data)

    async def DeleteMemory(
        self,
        request: pb.DeleteMemoryRequest,
        context: ServicerContext[pb.DeleteMemoryRequest, pb.DeleteMemoryResponse],
    ) -> pb.DeleteMemoryResponse:
        org = await self._access.organization(CALL.get())
        memory = await self._store.delete(org, request.memory)
        return pb.DeleteMemoryResponse(id=memory.id, object="memory.deleted", deleted=True)

    async def GetMemorySettings(
        self,
        request: pb.GetMemorySettingsRequest,
        context: ServicerContext[pb.GetMemorySettingsRequest, pb.GetMemorySettingsResponse],
    ) -> pb.GetMemorySettingsResponse:
        settings = await self._store.settings(await self._access.organization(CALL.get()))
        return pb.GetMemorySettingsResponse(settings=_settings_message(settings))

    async def UpdateMemorySettings(
        self,
        request: pb.UpdateMemorySettingsRequest,
        context: ServicerContext[pb.UpdateMemorySettingsRequest, pb.UpdateMemorySettingsResponse],
    ) -> pb.UpdateMemorySettingsResponse:
        org = await self._access.organization(CALL.get())
        wanted = Settings(auto_store=request.settings.auto_store)
        settings = await self._store.set_settings(org, wanted)
        return pb.UpdateMemorySettingsResponse(settings=_settings_message(settings))


def _settings_message(settings: Settings) -> pb.MemorySettings:
    return pb.MemorySettings(auto_store=settings.auto_store)
