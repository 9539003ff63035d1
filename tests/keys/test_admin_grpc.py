"""The admin service through a real grpc.aio server on port 0, on both databases."""

from __future__ import annotations

import grpc
import pytest

from tests.keys.harness import ADMIN_METADATA, Served, bearer, trailing
from tokenwire.admin.v1 import admin_pb2


async def create_key(
    served: Served, org: str = "acme", **fields: object
) -> admin_pb2.CreateKeyResponse:
    request = admin_pb2.CreateKeyRequest(organization_id=org, create_organization=True, **fields)  # type: ignore[arg-type]
    response: admin_pb2.CreateKeyResponse = await served.admin().CreateKey(
        request, metadata=ADMIN_METADATA
    )
    return response


async def test_keys_are_created_listed_fetched_revoked_and_rotated(served: Served) -> None:
    admin = served.admin()
    await admin.CreateOrganization(
        admin_pb2.CreateOrganizationRequest(id="acme", name="Acme"), metadata=ADMIN_METADATA
    )
    created = await create_key(
        served,
        name="ci",
        allowed_models=["fake-echo"],
        rate_limit=admin_pb2.RateLimit(requests=5),
        budget_usd=2.5,
        expire_time=int(served.clock()) + 3600,
    )
    key = created.key
    assert created.secret.startswith(key.prefix) and key.state == admin_pb2.KEY_STATE_ACTIVE
    assert key.rate_limit.requests == 5 and key.rate_limit.window_seconds == 60
    assert not key.rate_limit.HasField("tokens") and key.budget_usd == 2.5

    listed = await admin.ListKeys(admin_pb2.ListKeysRequest(), metadata=ADMIN_METADATA)
    got = await admin.GetKey(admin_pb2.GetKeyRequest(key_id=key.id), metadata=ADMIN_METADATA)
    assert list(listed.data) == [key] and got.key == key
    for message in (listed, got):
        assert created.secret.encode() not in message.SerializeToString()

    rotated = await admin.RotateKey(
        admin_pb2.RotateKeyRequest(key_id=key.id), metadata=ADMIN_METADATA
    )
    assert rotated.key.id == key.id and rotated.secret != created.secret
    assert rotated.key.HasField("rotate_time") and rotated.key.prefix != key.prefix

    revoked = await admin.RevokeKey(
        admin_pb2.RevokeKeyRequest(key_id=key.id), metadata=ADMIN_METADATA
    )
    assert revoked.key.state == admin_pb2.KEY_STATE_REVOKED and revoked.key.HasField("revoke_time")


async def test_list_filters_by_organization(served: Served) -> None:
    a = await create_key(served, "acme")
    await create_key(served, "globex")
    listed = await served.admin().ListKeys(
        admin_pb2.ListKeysRequest(organization_id="acme"), metadata=ADMIN_METADATA
    )
    assert [k.id for k in listed.data] == [a.key.id]
    orgs = await served.admin().ListOrganizations(
        admin_pb2.ListOrganizationsRequest(), metadata=ADMIN_METADATA
    )
    assert [o.id for o in orgs.data] == ["acme", "globex"]


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token", "api-key"])
async def test_anyone_but_the_admin_is_refused(served: Served, token: str | None) -> None:
    created = await create_key(served)
    if token == "api-key":
        token = created.secret
    metadata = bearer(token) if token else ()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.admin().ListKeys(admin_pb2.ListKeysRequest(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    found = trailing(caught.value.trailing_metadata())
    assert found["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("call", "message", "code"),
    [
        ("GetKey", admin_pb2.GetKeyRequest(key_id="key_nope"), grpc.StatusCode.NOT_FOUND),
        ("RevokeKey", admin_pb2.RevokeKeyRequest(key_id=""), grpc.StatusCode.NOT_FOUND),
        ("RotateKey", admin_pb2.RotateKeyRequest(key_id="x" * 5000), grpc.StatusCode.NOT_FOUND),
        (
            "CreateKey",
            admin_pb2.CreateKeyRequest(organization_id="nobody"),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "CreateKey",
            admin_pb2.CreateKeyRequest(organization_id="", create_organization=True),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "CreateKey",
            admin_pb2.CreateKeyRequest(
                organization_id="acme",
                create_organization=True,
                rate_limit=admin_pb2.RateLimit(requests=-1),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "ListKeys",
            admin_pb2.ListKeysRequest(organization_id="nobody"),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "ListKeys",
            admin_pb2.ListKeysRequest(organization_id="bad org"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "CreateOrganization",
            admin_pb2.CreateOrganizationRequest(id="acme"),
            grpc.StatusCode.ALREADY_EXISTS,
        ),
    ],
)
async def test_bad_requests_are_clear_errors(
    served: Served, call: str, message: object, code: grpc.StatusCode
) -> None:
    await served.admin().CreateOrganization(
        admin_pb2.CreateOrganizationRequest(id="acme"), metadata=ADMIN_METADATA
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(served.admin(), call)(message, metadata=ADMIN_METADATA)
    assert caught.value.code() == code
