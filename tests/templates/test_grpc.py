"""The template service through a real grpc.aio server on port 0, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.keys.auth import AdminCredential
from server.pipeline.context import OpenAuthenticator
from server.rpc.access import Access
from server.storage.database import Database
from server.storage.migrations import migrate
from server.templates.service import TemplateServicer
from server.templates.store import MIGRATIONS, TemplateStore
from tests.templates.stack import grpc_server, org, user_message
from tokenwire.templates.v1 import templates_pb2 as pb
from tokenwire.templates.v1 import templates_pb2_grpc

ACME, GLOBEX = org("acme"), org("globex")


@pytest.fixture
async def stub(database: Database) -> AsyncIterator[templates_pb2_grpc.TemplateServiceAsyncStub]:
    await migrate(database, MIGRATIONS)
    servicer = TemplateServicer(
        TemplateStore(database), Access(OpenAuthenticator(), AdminCredential(None))
    )
    server, target = await grpc_server(
        [(templates_pb2_grpc.add_TemplateServiceServicer_to_server, servicer)]
    )
    async with grpc.aio.insecure_channel(target) as channel:
        yield templates_pb2_grpc.TemplateServiceStub(channel)
    await server.stop(None)


def template(name: str, text: str = "Hello {{who}}") -> pb.Template:
    return pb.Template(
        name=name,
        messages=[user_message(text)],
        variables=[pb.TemplateVariable(name="who", default_value="you")],
    )


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


async def test_create_get_list_update_delete(
    stub: templates_pb2_grpc.TemplateServiceAsyncStub,
) -> None:
    created = (
        await stub.CreateTemplate(pb.CreateTemplateRequest(template=template("a")), metadata=ACME)
    ).template
    assert created.version == 1 and created.id
    got = await stub.GetTemplate(pb.GetTemplateRequest(template="a"), metadata=ACME)
    assert got.template == created
    changes = pb.Template(messages=[user_message("Bye {{who}}")])
    updated = await stub.UpdateTemplate(
        pb.UpdateTemplateRequest(template=created.id, changes=changes), metadata=ACME
    )
    assert updated.template.version == 2
    old = await stub.GetTemplate(pb.GetTemplateRequest(template="a", version=1), metadata=ACME)
    assert old.template.messages[0].content_text == "Hello {{who}}"
    listed = await stub.ListTemplates(pb.ListTemplatesRequest(), metadata=ACME)
    assert listed.object == "list" and [t.version for t in listed.data] == [2]
    deleted = await stub.DeleteTemplate(pb.DeleteTemplateRequest(template="a"), metadata=ACME)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "template.deleted", True)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetTemplate(pb.GetTemplateRequest(template="a"), metadata=ACME)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_without_an_organization_every_call_is_refused(
    stub: templates_pb2_grpc.TemplateServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListTemplates(pb.ListTemplatesRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "organization_id" in (caught.value.details() or "")
    info = error_info(caught.value)
    assert (info.reason, info.metadata["http_status"]) == ("organization_required", "400")


async def test_name_taken_is_already_exists(
    stub: templates_pb2_grpc.TemplateServiceAsyncStub,
) -> None:
    await stub.CreateTemplate(pb.CreateTemplateRequest(template=template("a")), metadata=ACME)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateTemplate(pb.CreateTemplateRequest(template=template("a")), metadata=ACME)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(caught.value).metadata["http_status"] == "409"


async def test_organizations_never_see_each_others_templates(
    stub: templates_pb2_grpc.TemplateServiceAsyncStub,
) -> None:
    mine = await stub.CreateTemplate(
        pb.CreateTemplateRequest(template=template("shared-name", "ACME {{who}}")), metadata=ACME
    )
    theirs = await stub.CreateTemplate(
        pb.CreateTemplateRequest(template=template("shared-name", "GLOBEX {{who}}")),
        metadata=GLOBEX,
    )
    assert mine.template.id != theirs.template.id
    for ref in (theirs.template.id, theirs.template.id.upper()):
        calls: list[Awaitable[object]] = [
            stub.GetTemplate(pb.GetTemplateRequest(template=ref), metadata=ACME),
            stub.UpdateTemplate(
                pb.UpdateTemplateRequest(template=ref, changes=pb.Template(description="x")),
                metadata=ACME,
            ),
            stub.DeleteTemplate(pb.DeleteTemplateRequest(template=ref), metadata=ACME),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    got = await stub.GetTemplate(pb.GetTemplateRequest(template="shared-name"), metadata=ACME)
    assert got.template.messages[0].content_text == "ACME {{who}}"
    listed = await stub.ListTemplates(pb.ListTemplatesRequest(), metadata=GLOBEX)
    assert [t.id for t in listed.data] == [theirs.template.id]
    assert listed.data[0].version == 1 and not listed.data[0].HasField("description")


async def test_limit_out_of_range_is_refused(
    stub: templates_pb2_grpc.TemplateServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListTemplates(pb.ListTemplatesRequest(limit=0), metadata=ACME)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).metadata["param"] == "limit"
