"""The `MemoryService` servicer: the caller's organization's memories over gRPC and REST."""

from __future__ import annotations

from typing import Any

from server.errors import InvalidRequest
from server.memory.model import Memory, Scope, Settings
from server.memory.store import MemoryStore
from server.pipeline.context import Authenticator
from server.rpc.scoped import OrgScoped, page_limit
from tokenwire.memory.v1 import memory_pb2 as pb
from tokenwire.memory.v1 import memory_pb2_grpc

SERVICE_NAME = "tokenwire.memory.v1.MemoryService"
DESCRIPTOR = pb.DESCRIPTOR.services_by_name["MemoryService"]
MAX_QUERY = 4000

_SOURCES = {"api": pb.MEMORY_SOURCE_API, "auto": pb.MEMORY_SOURCE_AUTO}


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
    def __init__(self, store: MemoryStore, authenticator: Authenticator) -> None:
        self._store = store
        self._scoped = OrgScoped(authenticator)

    async def AddMemory(self, request: pb.AddMemoryRequest, context: Any) -> pb.AddMemoryResponse:
        m = request.memory

        async def work(org: str) -> Memory:
            user, session = _optional(m, "user"), _optional(m, "session_id")
            return await self._store.add(org, m.content, user=user, session_id=session)

        return pb.AddMemoryResponse(memory=memory_message(await self._scoped.run(context, work)))

    async def GetMemory(self, request: pb.GetMemoryRequest, context: Any) -> pb.GetMemoryResponse:
        memory = await self._scoped.run(context, lambda org: self._store.get(org, request.memory))
        return pb.GetMemoryResponse(memory=memory_message(memory))

    async def ListMemories(
        self, request: pb.ListMemoriesRequest, context: Any
    ) -> pb.ListMemoriesResponse:
        async def work(org: str) -> tuple[list[Memory], bool]:
            return await self._store.page(
                org,
                user=_optional(request, "user"),
                session_id=_optional(request, "session_id"),
                limit=page_limit(request, 20),
                after=_optional(request, "after"),
            )

        page, more = await self._scoped.run(context, work)
        data = [memory_message(m) for m in page]
        return pb.ListMemoriesResponse(object="list", data=data, has_more=more)

    async def SearchMemories(
        self, request: pb.SearchMemoriesRequest, context: Any
    ) -> pb.SearchMemoriesResponse:
        async def work(org: str) -> list[pb.Memory]:
            if not request.query.strip() or len(request.query) > MAX_QUERY:
                raise InvalidRequest(
                    f"'query' must hold 1 to {MAX_QUERY} characters.", param="query"
                )
            scope = Scope(org, _optional(request, "user"), _optional(request, "session_id"))
            found = await self._store.search(scope, request.query, page_limit(request, 10))
            return [memory_message(s.memory, s.score) for s in found]

        data = await self._scoped.run(context, work)
        return pb.SearchMemoriesResponse(object="list", data=data)

    async def DeleteMemory(
        self, request: pb.DeleteMemoryRequest, context: Any
    ) -> pb.DeleteMemoryResponse:
        memory = await self._scoped.run(
            context, lambda org: self._store.delete(org, request.memory)
        )
        return pb.DeleteMemoryResponse(id=memory.id, object="memory.deleted", deleted=True)

    async def GetMemorySettings(
        self, request: pb.GetMemorySettingsRequest, context: Any
    ) -> pb.GetMemorySettingsResponse:
        settings = await self._scoped.run(context, self._store.settings)
        return pb.GetMemorySettingsResponse(settings=_settings_message(settings))

    async def UpdateMemorySettings(
        self, request: pb.UpdateMemorySettingsRequest, context: Any
    ) -> pb.UpdateMemorySettingsResponse:
        wanted = Settings(auto_store=request.settings.auto_store)
        settings = await self._scoped.run(
            context, lambda org: self._store.set_settings(org, wanted)
        )
        return pb.UpdateMemorySettingsResponse(settings=_settings_message(settings))


def _settings_message(settings: Settings) -> pb.MemorySettings:
    return pb.MemorySettings(auto_store=settings.auto_store)
