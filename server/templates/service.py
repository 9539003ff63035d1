"""The `TemplateService` servicer: templates of the caller's organization over gRPC and REST."""

from __future__ import annotations

from grpc.aio import ServicerContext

from server.rpc.access import Access
from server.rpc.boundary import CALL
from server.rpc.paging import page_limit
from server.templates.store import TemplateStore
from tokenwire.templates.v1 import templates_pb2 as pb
from tokenwire.templates.v1 import templates_pb2_grpc

SERVICE_NAME = "tokenwire.templates.v1.TemplateService"
DESCRIPTOR = pb.DESCRIPTOR.services_by_name["TemplateService"]


class TemplateServicer(templates_pb2_grpc.TemplateServiceServicer):
    def __init__(self, store: TemplateStore, access: Access) -> None:
        self._store = store
        self._access = access

    async def CreateTemplate(
        self,
        request: pb.CreateTemplateRequest,
        context: ServicerContext[pb.CreateTemplateRequest, pb.CreateTemplateResponse],
    ) -> pb.CreateTemplateResponse:
        org = await self._access.organization(CALL.get())
        return pb.CreateTemplateResponse(template=await self._store.create(org, request.template))

    async def GetTemplate(
        self,
        request: pb.GetTemplateRequest,
        context: ServicerContext[pb.GetTemplateRequest, pb.GetTemplateResponse],
    ) -> pb.GetTemplateResponse:
        org = await self._access.organization(CALL.get())
        version = request.version if request.HasField("version") else None
        template = await self._store.get(org, request.template, version)
        return pb.GetTemplateResponse(template=template)

    async def ListTemplates(
        self,
        request: pb.ListTemplatesRequest,
        context: ServicerContext[pb.ListTemplatesRequest, pb.ListTemplatesResponse],
    ) -> pb.ListTemplatesResponse:
        org = await self._access.organization(CALL.get())
        after = request.after if request.HasField("after") else None
        page, more = await self._store.page(org, page_limit(request, 20), after)
        return pb.ListTemplatesResponse(object="list", data=page, has_more=more)

    async def UpdateTemplate(
        self,
        request: pb.UpdateTemplateRequest,
        context: ServicerContext[pb.UpdateTemplateRequest, pb.UpdateTemplateResponse],
    ) -> pb.UpdateTemplateResponse:
        org = await self._access.organization(CALL.get())
        mask = tuple(request.update_mask.paths)
        template = await self._store.update(org, request.template, request.changes, mask)
        return pb.UpdateTemplateResponse(template=template)

    async def DeleteTemplate(
        self,
        request: pb.DeleteTemplateRequest,
        context: ServicerContext[pb.DeleteTemplateRequest, pb.DeleteTemplateResponse],
    ) -> pb.DeleteTemplateResponse:
        org = await self._access.organization(CALL.get())
        deleted = await self._store.delete(org, request.template)
        return pb.DeleteTemplateResponse(id=deleted, object="template.deleted", deleted=True)
