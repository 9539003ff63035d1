"""One organization never sees another's keys or usage, over gRPC or REST; the admin sees all.

Two organizations each make a chat call with their own key; then each key
tries every way to read the other's usage and keys.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import httpx
import pytest

from server.keys.records import KeySpec
from tests.keys.harness import ADMIN_HEADERS, ADMIN_METADATA, Served, bearer
from tests.usage.test_chat_e2e import ask
from tokenwire.admin.v1 import admin_pb2
from tokenwire.usage.v1 import usage_pb2


@dataclass
class Tenants:
    acme_secret: str
    acme_key: str
    globex_secret: str
    globex_key: str


@pytest.fixture
async def tenants(served: Served) -> Tenants:
    acme = await served.store.create(KeySpec("acme"), create_organization=True)
    globex = await served.store.create(KeySpec("globex"), create_organization=True)
    for issued, session in ((acme, "acme-session"), (globex, "globex-session")):
        metadata = (*bearer(issued.secret), ("x-session-id", session))
        await served.chat().CreateChatCompletion(ask(), metadata=metadata)
    return Tenants(acme.secret, acme.key.id, globex.secret, globex.key.id)


def grouped(**fields: object) -> usage_pb2.GetUsageRequest:
    dims = [usage_pb2.USAGE_DIMENSION_ORGANIZATION, usage_pb2.USAGE_DIMENSION_KEY]
    usage_filter = usage_pb2.UsageFilter(**fields)  # type: ignore[arg-type]
    return usage_pb2.GetUsageRequest(group_by=dims, filter=usage_filter)


async def test_grpc_a_key_sees_only_its_organization(served: Served, tenants: Tenants) -> None:
    stub = served.usage_stub()
    mine = await stub.GetUsage(grouped(), metadata=bearer(tenants.acme_secret))
    assert [(b.organization_id, b.key_id) for b in mine.data] == [("acme", tenants.acme_key)]
    assert mine.total.requests == 1
    sneaky = await stub.GetUsage(
        grouped(key_id=tenants.globex_key), metadata=bearer(tenants.acme_secret)
    )
    assert not sneaky.data and sneaky.total.requests == 0
    for org in ("globex", "nobody"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetUsage(grouped(organization_id=org), metadata=bearer(tenants.acme_secret))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ExportUsage(
                usage_pb2.ExportUsageRequest(filter=usage_pb2.UsageFilter(organization_id=org)),
                metadata=bearer(tenants.acme_secret),
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_grpc_the_tenancy_header_cannot_switch_organizations(
    served: Served, tenants: Tenants
) -> None:
    metadata = (*bearer(tenants.acme_secret), ("organization_id", "globex"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.usage_stub().GetUsage(grouped(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_grpc_export_holds_only_the_callers_records(served: Served, tenants: Tenants) -> None:
    export = await served.usage_stub().ExportUsage(
        usage_pb2.ExportUsageRequest(), metadata=bearer(tenants.globex_secret)
    )
    text = export.body.data.decode()
    assert export.body.content_type == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["organization_id"], r["session_id"]) for r in rows] == [("globex", "globex-session")]
    assert export.records == 1 and not export.truncated
    assert "acme" not in text


async def test_grpc_keys_cannot_reach_the_admin_api(served: Served, tenants: Tenants) -> None:
    admin = served.admin()
    for call, message in (
        ("ListKeys", admin_pb2.ListKeysRequest(organization_id="acme")),
        ("GetKey", admin_pb2.GetKeyRequest(key_id=tenants.globex_key)),
        ("RevokeKey", admin_pb2.RevokeKeyRequest(key_id=tenants.globex_key)),
        ("RotateKey", admin_pb2.RotateKeyRequest(key_id=tenants.acme_key)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(admin, call)(message, metadata=bearer(tenants.acme_secret))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await served.store.get(tenants.globex_key)).revoked_at is None


async def test_grpc_the_admin_sees_everyone(served: Served, tenants: Tenants) -> None:
    stub = served.usage_stub()
    everyone = await stub.GetUsage(grouped(), metadata=ADMIN_METADATA)
    assert [b.organization_id for b in everyone.data] == ["acme", "globex"]
    globex = await stub.GetUsage(grouped(organization_id="globex"), metadata=ADMIN_METADATA)
    assert [b.key_id for b in globex.data] == [tenants.globex_key]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetUsage(grouped(organization_id="nobody"), metadata=ADMIN_METADATA)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture(params=["in-process", "channel"])
async def http(request: pytest.FixtureRequest, served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with served.http(request.param) as client:
        yield client


async def test_rest_a_key_sees_only_its_organization(
    http: httpx.AsyncClient, tenants: Tenants
) -> None:
    acme = {"Authorization": f"Bearer {tenants.acme_secret}"}
    mine = await http.get("/v1/usage?group_by=organization&group_by=key", headers=acme)
    assert mine.status_code == 200, mine.text
    data = mine.json()["data"]
    assert [(b["organization_id"], b["key_id"]) for b in data] == [("acme", tenants.acme_key)]
    assert mine.json()["total"]["requests"] == 1
    other = await http.get(f"/v1/usage?filter.key_id={tenants.globex_key}", headers=acme)
    assert other.json()["total"]["requests"] == 0
    for org in ("globex", "nobody"):
        for path in ("/v1/usage", "/v1/usage/export"):
            refused = await http.get(f"{path}?filter.organization_id={org}", headers=acme)
            assert refused.status_code == 403
    export = await http.get("/v1/usage/export", headers=acme)
    assert "globex" not in export.text and export.headers["x-tokenwire-records"] == "1"
    assert export.headers["content-type"] == "text/csv; charset=utf-8"
    assert export.headers["x-tokenwire-truncated"] == "false"
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["organization_id"] for r in rows] == ["acme"]
    for path in ("/v1/admin/keys", f"/v1/admin/keys/{tenants.globex_key}"):
        assert (await http.get(path, headers=acme)).status_code == 401
    assert (
        await http.delete(f"/v1/admin/keys/{tenants.globex_key}", headers=acme)
    ).status_code == 401


async def test_rest_the_admin_sees_everyone(http: httpx.AsyncClient, tenants: Tenants) -> None:
    everyone = await http.get("/v1/usage?group_by=session", headers=ADMIN_HEADERS)
    sessions = [b["session_id"] for b in everyone.json()["data"]]
    assert sessions == ["acme-session", "globex-session"]
    keys = await http.get("/v1/admin/keys", headers=ADMIN_HEADERS)
    assert {k["organization_id"] for k in keys.json()["data"]} == {"acme", "globex"}


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 401),
        ("group_by=nonsense", 400),
        ("filter.start_time=200&filter.end_time=100", 400),
        ("filter.start_time=soon", 400),
        ("filter.organization_id=bad%20org", 400),
        (f"filter.session_id={'s' * 129}", 400),
        ("unknown=1", 400),
    ],
)
async def test_rest_bad_usage_queries_are_4xx(
    http: httpx.AsyncClient, tenants: Tenants, query: str, status: int
) -> None:
    headers = {} if status == 401 else {"Authorization": f"Bearer {tenants.acme_secret}"}
    response = await http.get(f"/v1/usage?{query}", headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    export = await http.get("/v1/usage/export?limit=0", headers=ADMIN_HEADERS)
    assert export.status_code == 400
