"""The `TemplateService` servicer: templates of the caller's organization over gRPC and REST."""

from __future__ import annotations

from typing import Any

from server.pipeline.context import Authenticator
from server.rpc.scoped import OrgScoped, page_limit
from server.templates.store import TemplateStore
from tokenwire.templates.v1 import templates_pb2 as pb
from tokenwire.templates.v1 import templates_pb2_grpc

SERVICE_NAME = "tokenwire.templates.v1.TemplateService"
DESCRIPTOR = pb.DESCRIPTOR.services_by_name["TemplateService"]


class TemplateServicer(templates_pb2_grpc.TemplateServiceServicer):
    def __init__(self, store: TemplateStore, authenticator: Authenticator) -> None:
        self._store = store
        self._scoped = OrgScoped(authenticator)

    async def CreateTemplate(
        self, request: pb.CreateTemplateRequest, context: Any
    ) -> pb.CreateTemplateResponse:
        template = await self._scoped.run(
            context, lambda org: self._store.create(org, request.template)
        )
        return pb.CreateTemplateResponse(template=template)

    async def GetTemplate(
        self, request: pb.GetTemplateRequest, context: Any
    ) -> pb.GetTemplateResponse:
        version = request.version if request.HasField("version") else None
        template = await self._scoped.run(
            context, lambda org: self._store.get(org, request.template, version)
        )
        return pb.GetTemplateResponse(template=template)

    async def ListTemplates(
        self, request: pb.ListTemplatesRequest, context: Any
    ) -> pb.ListTemplatesResponse:
        after = request.after if request.HasField("after") else None

        async def work(org: str) -> tuple[list[pb.Template], bool]:
            return await self._store.page(org, page_limit(request, 20), after)

        page, more = await self._scoped.run(context, work)
        return pb.ListTemplatesResponse(object="list", data=page, has_more=more)

    async def UpdateTemplate(
        self, request: pb.UpdateTemplateRequest, context: Any
    ) -> pb.UpdateTemplateResponse:
        template = await self._scoped.run(
            context, lambda org: self._store.update(org, request.template, request.changes)
        )
        return pb.UpdateTemplateResponse(template=template)

    async def DeleteTemplate(
        self, request: pb.DeleteTemplateRequest, context: Any
    ) -> pb.DeleteTemplateResponse:
        deleted = await self._scoped.run(
            context, lambda org: self._store.delete(org, request.template)
        )
        return pb.DeleteTemplateResponse(id=deleted, object="template.deleted", deleted=True)
