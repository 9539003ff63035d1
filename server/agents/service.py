"""The `AgentService` servicer: agents of the caller's organization over gRPC and REST."""

from __future__ import annotations

from grpc.aio import ServicerContext

from server.agents.store import AgentStore
from server.rpc.access import Access
from server.rpc.boundary import CALL
from server.rpc.paging import page_limit
from tokenwire.agents.v1 import agents_pb2 as pb
from tokenwire.agents.v1 import agents_pb2_grpc

DESCRIPTOR = pb.DESCRIPTOR.services_by_name["AgentService"]


class AgentServicer(agents_pb2_grpc.AgentServiceServicer):
    def __init__(self, store: AgentStore, access: Access) -> None:
        self._store = store
        self._access = access

    async def CreateAgent(
        self,
        request: pb.CreateAgentRequest,
        context: ServicerContext[pb.CreateAgentRequest, pb.CreateAgentResponse],
    ) -> pb.CreateAgentResponse:
        org = await self._access.organization(CALL.get())
        return pb.CreateAgentResponse(agent=await self._store.create(org, request.agent))

    async def GetAgent(
        self,
        request: pb.GetAgentRequest,
        context: ServicerContext[pb.GetAgentRequest, pb.GetAgentResponse],
    ) -> pb.GetAgentResponse:
        org = await self._access.organization(CALL.get())
        version = request.version if request.HasField("version") else None
        return pb.GetAgentResponse(agent=await self._store.get(org, request.agent, version))

    async def ListAgents(
        self,
        request: pb.ListAgentsRequest,
        context: ServicerContext[pb.ListAgentsRequest, pb.ListAgentsResponse],
    ) -> pb.ListAgentsResponse:
        org = await self._access.organization(CALL.get())
        after = request.after if request.HasField("after") else None
        page, more = await self._store.page(org, page_limit(request, 20), after)
        return pb.ListAgentsResponse(object="list", data=page, has_more=more)

    async def UpdateAgent(
        self,
        request: pb.UpdateAgentRequest,
        context: ServicerContext[pb.UpdateAgentRequest, pb.UpdateAgentResponse],
    ) -> pb.UpdateAgentResponse:
        org = await self._access.organization(CALL.get())
        mask = tuple(request.update_mask.paths)
        agent = await self._store.update(org, request.agent, request.changes, mask)
        return pb.UpdateAgentResponse(agent=agent)

    async def DeleteAgent(
        self,
        request: pb.DeleteAgentRequest,
        context: ServicerContext[pb.DeleteAgentRequest, pb.DeleteAgentResponse],
    ) -> pb.DeleteAgentResponse:
        org = await self._access.organization(CALL.get())
        deleted = await self._store.delete(org, request.agent)
        return pb.DeleteAgentResponse(id=deleted, object="agent.deleted", deleted=True)
