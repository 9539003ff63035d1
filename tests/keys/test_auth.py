"""`KeyAuthenticator`, `AuthStage` and `AdminCredential`: 401, 403 and who the caller is."""

from __future__ import annotations

import pytest

from server.errors import PermissionDenied, Unauthenticated
from server.keys.auth import AdminCredential, KeyAuthenticator
from server.keys.records import KeySpec
from server.keys.stage import AuthStage
from server.keys.store import KeyStore
from server.pipeline.context import CallInfo, OpenAuthenticator, Principal
from server.rpc.access import Access
from tests.usage.factories import context

ADMIN = "admin-token-0123456789"


def call(authorization: str | None = None, **metadata: str) -> CallInfo:
    if authorization is not None:
        metadata["authorization"] = authorization
    return CallInfo("req_1", metadata, "10.0.0.1")


async def test_a_key_becomes_its_principal(store: KeyStore) -> None:
    spec = KeySpec("acme", default_model="fake-echo", allowed_models=("fake-echo",))
    issued = await store.create(spec, create_organization=True)
    principal = await KeyAuthenticator(store).authenticate(call(f"Bearer {issued.secret}"))
    assert principal == Principal(issued.key.id, "acme", "fake-echo", frozenset({"fake-echo"}))
    plain = await store.create(KeySpec("acme"))
    principal = await KeyAuthenticator(store).authenticate(call(f"bearer  {plain.secret} "))
    assert principal.allowed_models is None and principal.default_model is None


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer sk-not-ours",
        "Bearer tw_0123456789ab_" + "A" * 43,
        "Bearer " + "x" * 100_000,
        "Bearer \x00\x01",
    ],
)
async def test_missing_or_garbage_keys_are_401_with_a_challenge(
    store: KeyStore, authorization: str | None
) -> None:
    stage = AuthStage(Access(KeyAuthenticator(store), AdminCredential(None)))
    metadata = {} if authorization is None else {"authorization": authorization}
    ctx = context(metadata)
    with pytest.raises(Unauthenticated) as caught:
        await stage.before(ctx)
    assert caught.value.http_status == 401 and caught.value.code == "invalid_api_key"
    assert ctx.headers["www-authenticate"] == 'Bearer realm="tokenwire"'


async def test_another_organizations_header_is_403(store: KeyStore) -> None:
    issued = await store.create(KeySpec("acme"), create_organization=True)
    await store.organizations.create("globex")
    stage = AuthStage(Access(KeyAuthenticator(store), AdminCredential(None)))
    for org in ("globex", "no-such-org", "x" * 500):
        ctx = context({"authorization": f"Bearer {issued.secret}", "organization_id": org})
        with pytest.raises(PermissionDenied) as caught:
            await stage.before(ctx)
        assert caught.value.http_status == 403 and caught.value.param == "organization_id"
    ctx = context({"authorization": f"Bearer {issued.secret}", "organization_id": "acme"})
    await stage.before(ctx)
    assert ctx.principal.organization_id == "acme"


async def test_the_open_authenticator_takes_the_header_at_its_word() -> None:
    ctx = context({"organization_id": "acme"})
    await AuthStage(Access(OpenAuthenticator(), AdminCredential(None))).before(ctx)
    assert ctx.principal == Principal(organization_id="acme")


async def test_the_admin_credential() -> None:
    admin = AdminCredential(ADMIN)
    admin.check(call(f"Bearer {ADMIN}"))
    assert admin.matches(call(f"Bearer {ADMIN}")) and not admin.matches(call("Bearer nope"))
    for header in (None, "Bearer nope", f"Basic {ADMIN}", f"Bearer {ADMIN}x"):
        with pytest.raises(Unauthenticated):
            admin.check(call(header))
    with pytest.raises(PermissionDenied) as caught:
        AdminCredential(None).check(call(f"Bearer {ADMIN}"))
    assert caught.value.code == "admin_disabled"
    assert not AdminCredential(None).matches(call("Bearer "))
    with pytest.raises(ValueError, match="at least 16"):
        AdminCredential("short")
