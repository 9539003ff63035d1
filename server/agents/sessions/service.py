"""The `SessionService` servicer: recorded agent sessions of the caller's organization,
and their replay, over gRPC and REST."""

from __future__ import annotations

from grpc.aio import ServicerContext

from server.agents.sessions.replay import Replayer
from server.agents.sessions.store import SessionStore
from server.rpc.access import Access
from server.rpc.boundary import CALL
from server.rpc.paging import page_limit
from tokenwire.sessions.v1 import sessions_pb2 as pb
from tokenwire.sessions.v1 import sessions_pb2_grpc

DESCRIPTOR = pb.DESCRIPTOR.services_by_name["SessionService"]


class SessionServicer(sessions_pb2_grpc.SessionServiceServicer):
    def __init__(self, store: SessionStore, replayer: Replayer, access: Access) -> None:
        self._store = store
        self._replayer = replayer
        self._access = access

    async def ListSessions(
        self,
        request: pb.ListSessionsRequest,
        context: ServicerContext[pb.ListSessionsRequest, pb.ListSessionsResponse],
    ) -> pb.ListSessionsResponse:
        org = await self._access.organization(CALL.get())
        page = await self._store.page(org, page_limit(request, 20))
        return pb.ListSessionsResponse(object="list", data=page)

    async def GetSession(
        self,
        request: pb.GetSessionRequest,
        context: ServicerContext[pb.GetSessionRequest, pb.GetSessionResponse],
    ) -> pb.GetSessionResponse:
        org = await self._access.organization(CALL.get())
        return pb.GetSessionResponse(session=await self._store.get(org, request.session))

    async def ReplaySession(
        self,
        request: pb.ReplaySessionRequest,
        context: ServicerContext[pb.ReplaySessionRequest, pb.ReplaySessionResponse],
    ) -> pb.ReplaySessionResponse:
        call = CALL.get()
        org = await self._access.organization(call)
        model = request.model if request.HasField("model") and request.model else None
        replay = await self._replayer.replay(org, request.session, model, call)
        return pb.ReplaySessionResponse(replay=replay)
