"""The key store on SQLite and on the real PostgreSQL: organizations, keys, verify, rotate."""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from server.keys.ledger import KeyLedger
from server.keys.quotas import KeyQuotas
from server.keys.records import KeySpec
from server.keys.store import KeyStore
from server.limits.base import Rate
from server.pipeline.context import Principal
from server.storage.database import Database
from tests.limits.clock import Clock

SPEC = KeySpec(
    organization_id="acme",
    name="ci",
    default_model="fake-echo",
    allowed_models=("fake-echo", "other"),
    rate=Rate(requests=10, tokens=1000, window=60),
    budget_usd=5.0,
    expires_at=2_000_000.0,
)


async def test_a_key_round_trips_and_only_its_hash_is_stored(
    store: KeyStore, database: Database
) -> None:
    await store.organizations.create("acme", "Acme Inc.")
    issued = await store.create(SPEC)
    assert issued.key.spec == SPEC
    assert issued.key.id.startswith("key_") and issued.secret.startswith(issued.key.prefix)
    assert await store.get(issued.key.id) == issued.key
    assert (await store.verify(issued.secret)).id == issued.key.id
    rows = await database.fetch("SELECT * FROM api_keys")
    assert all(issued.secret not in str(v) for v in rows[0].values())


async def test_keys_need_a_known_organization_unless_asked_to_create_it(store: KeyStore) -> None:
    with pytest.raises(NotFound) as caught:
        await store.create(SPEC)
    assert caught.value.param == "organization_id"
    issued = await store.create(SPEC, create_organization=True)
    assert (await store.organizations.get("acme")).name == "acme"
    await store.create(SPEC, create_organization=True)  # an existing one is fine
    assert len(await store.list("acme")) == 2 and issued.key in await store.list()


async def test_organizations_are_unique_and_listed(store: KeyStore) -> None:
    await store.organizations.create("b-org", rate=Rate(requests=5, window=3600))
    await store.organizations.create("a-org")
    with pytest.raises(Conflict):
        await store.organizations.create("a-org")
    orgs = await store.organizations.list()
    assert [o.id for o in orgs] == ["a-org", "b-org"]
    assert orgs[1].rate == Rate(requests=5, window=3600)
    with pytest.raises(NotFound):
        await store.list("nobody")


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"organization_id": "../etc"}, "organization_id"),
        ({"organization_id": "x" * 65}, "organization_id"),
        ({"name": "n" * 101}, "name"),
        ({"name": "bad\nname"}, "name"),
        ({"default_model": ""}, "default_model"),
        ({"allowed_models": ("m" * 257,)}, "allowed_models"),
        ({"rate": Rate(requests=0)}, "rate_limit.requests"),
        ({"rate": Rate(tokens=-5)}, "rate_limit.tokens"),
        ({"rate": Rate(window=0)}, "rate_limit.window_seconds"),
        ({"rate": Rate(requests=2**31)}, "rate_limit.requests"),
        ({"default_model": "not-allowed"}, "default_model"),
        ({"budget_usd": -1.0}, "budget_usd"),
        ({"budget_usd": float("nan")}, "budget_usd"),
        ({"expires_at": 1.0}, "expire_time"),
        ({"expires_at": float(2**63 - 1)}, "expire_time"),  # would not list back as int64
    ],
)
async def test_bad_settings_are_400_naming_the_field(
    store: KeyStore, changes: dict[str, object], param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await store.create(replace(SPEC, **changes), create_organization=True)  # type: ignore[arg-type]
    assert caught.value.param == param


async def test_revoked_and_expired_keys_are_refused(store: KeyStore, clock: Clock) -> None:
    await store.organizations.create("acme")
    revoked = await store.create(SPEC)
    revoked_key = await store.revoke(revoked.key.id)
    assert revoked_key.state(clock()) == "revoked"
    assert (await store.revoke(revoked.key.id)).revoked_at == revoked_key.revoked_at
    with pytest.raises(Unauthenticated) as caught:
        await store.verify(revoked.secret)
    assert caught.value.code == "revoked_api_key"
    expiring = await store.create(SPEC)
    clock.now = SPEC.expires_at or 0.0
    with pytest.raises(Unauthenticated) as caught:
        await store.verify(expiring.secret)
    assert caught.value.code == "expired_api_key"


async def test_rotation_swaps_the_secret_and_keeps_the_rest(
    store: KeyStore, database: Database
) -> None:
    await store.organizations.create("acme")
    old = await store.create(SPEC)
    await KeyLedger(database).charge(old.key.id, 1.25)
    new = await store.rotate(old.key.id)
    assert new.key.id == old.key.id and new.key.spec == SPEC and new.key.spent_usd == 1.25
    assert new.secret != old.secret and new.key.prefix != old.key.prefix
    assert new.key.rotated_at is not None
    assert (await store.verify(new.secret)).id == old.key.id
    with pytest.raises(Unauthenticated):
        await store.verify(old.secret)
    await store.revoke(old.key.id)
    with pytest.raises(InvalidRequest):
        await store.rotate(old.key.id)


@pytest.mark.parametrize("key_id", ["", "key_nope", "key_" + "0" * 24, "'; DROP TABLE api_keys"])
async def test_unknown_key_ids_are_404(store: KeyStore, key_id: str) -> None:
    for action in (store.get, store.revoke, store.rotate):
        with pytest.raises(NotFound):
            await action(key_id)


async def test_verify_refuses_lookalikes(store: KeyStore) -> None:
    await store.organizations.create("acme")
    issued = await store.create(SPEC)
    handle_only = issued.key.prefix + "_" + "A" * 43
    for presented in ("garbage", handle_only, issued.secret + "x", issued.secret.upper()):
        with pytest.raises(Unauthenticated):
            await store.verify(presented)


async def test_ledger_charges_add_up(store: KeyStore, database: Database) -> None:
    await store.organizations.create("acme")
    issued = await store.create(SPEC)
    ledger = KeyLedger(database)
    for _ in range(4):
        await ledger.charge(issued.key.id, 0.5)
    budget = await ledger.budget(issued.key.id)
    assert budget is not None and budget.spent_usd == 2.0 and budget.remaining_usd == 3.0
    assert await ledger.budget("key_" + "0" * 24) is None


async def test_quotas_are_the_keys_and_the_organizations(
    store: KeyStore, database: Database
) -> None:
    await store.organizations.create("acme", rate=Rate(requests=100, window=3600))
    issued = await store.create(SPEC)
    checks = await KeyQuotas(database).checks(Principal(issued.key.id, "acme"))
    assert [(c.scope, c.rate) for c in checks] == [
        (f"key:{issued.key.id}", SPEC.rate),
        ("org:acme", Rate(requests=100, window=3600)),
    ]
    assert await KeyQuotas(database).checks(Principal()) == []


async def test_has_keys(store: KeyStore) -> None:
    assert not await store.has_keys()
    await store.create(SPEC, create_organization=True)
    assert await store.has_keys()
