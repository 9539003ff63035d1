"""`BudgetStage` on a real key ledger (402, charges) and `TagStage` (session_id and user bounds)."""

from __future__ import annotations

import pytest

from server.errors import InvalidRequest, PaymentRequired, StorageUnavailable
from server.keys.ledger import KeyLedger
from server.keys.records import KeySpec
from server.keys.store import KeyStore
from server.pipeline.context import Principal
from server.storage.database import Database
from server.usage.budget import Budget, BudgetStage
from server.usage.store import UsageStore
from server.usage.tags import TagStage
from tests.usage.factories import context, record


async def test_a_spent_budget_is_402_and_charges_add_up(
    usage: UsageStore, database: Database
) -> None:
    store = KeyStore(database)
    issued = await store.create(KeySpec("acme", budget_usd=0.1), create_organization=True)
    stage = BudgetStage(KeyLedger(database))
    principal = Principal(issued.key.id, "acme")
    for _ in range(2):
        ctx = context(principal=principal)
        await stage.before(ctx)
        await stage.after(ctx, record(key_id=issued.key.id, cost_usd=0.05))
    ctx = context(principal=principal)
    with pytest.raises(PaymentRequired) as caught:
        await stage.before(ctx)
    assert caught.value.http_status == 402 and caught.value.code == "budget_exceeded"
    assert ctx.headers["x-tokenwire-budget-remaining-usd"] == "0.000000"
    assert (await store.get(issued.key.id)).spent_usd == pytest.approx(0.1)


async def test_no_budget_no_key_no_charge(usage: UsageStore, database: Database) -> None:
    store = KeyStore(database)
    issued = await store.create(KeySpec("acme"), create_organization=True)
    stage = BudgetStage(KeyLedger(database))
    ctx = context(principal=Principal(issued.key.id, "acme"))
    await stage.before(ctx)
    await stage.before(context())
    await stage.after(ctx, record(key_id=issued.key.id, cost_usd=2.0))
    await stage.after(ctx, record(key_id=None, cost_usd=2.0))
    assert ctx.headers == {} and (await store.get(issued.key.id)).spent_usd == 2.0


class BrokenLedger:
    async def budget(self, key_id: str) -> Budget | None:
        return Budget(None, 0.0)

    async def charge(self, key_id: str, usd: float) -> None:
        raise ConnectionError("database went away")


async def test_a_failed_charge_never_raises_after_the_call() -> None:
    await BudgetStage(BrokenLedger()).after(context(), record(key_id="key_x", cost_usd=1.0))


class AwayLedger:
    """A ledger whose database is away until `back`; it keeps what it was charged."""

    def __init__(self) -> None:
        self.back = False
        self.charged = 0.0

    async def budget(self, key_id: str) -> Budget | None:
        return Budget(3.0, self.charged)

    async def charge(self, key_id: str, usd: float) -> None:
        if not self.back:
            raise StorageUnavailable("The database is unavailable")
        self.charged += usd


async def test_charges_the_database_missed_are_owed_and_counted() -> None:
    ledger = AwayLedger()
    stage = BudgetStage(ledger)
    key = Principal(key_id="key_x")
    for _ in range(3):  # answered while the database was away
        await stage.after(context(), record(key_id="key_x", cost_usd=1.0))
    with pytest.raises(PaymentRequired):  # what is owed counts against the budget
        await stage.before(context(principal=key))
    ledger.back = True
    await stage.after(context(), record(key_id="key_x", cost_usd=0.5))
    assert ledger.charged == pytest.approx(3.5)  # nothing lost, nothing twice


@pytest.mark.parametrize(
    ("metadata", "fields", "param"),
    [
        ({}, {"session_id": "s" * 129}, "session_id"),
        ({"x-session-id": "s" * 129}, {}, "x-session-id"),
        ({"x-session-id": "ok"}, {"session_id": "s" * 129}, "session_id"),
        ({}, {"user": "u" * 257}, "user"),
    ],
)
async def test_oversized_tags_are_400(
    metadata: dict[str, str], fields: dict[str, str], param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await TagStage().before(context(metadata, **fields))  # type: ignore[arg-type]
    assert caught.value.param == param and caught.value.http_status == 400


async def test_tags_at_their_limits_pass() -> None:
    await TagStage().before(context({"x-session-id": "s" * 128}, user="u" * 256))
    await TagStage().before(context({"x-session-id": "s" * 500}, session_id="body wins"))
