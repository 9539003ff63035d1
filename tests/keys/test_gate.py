"""`KeysOrOpen`: open until keys exist, asking the store once at a time, never in the way."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from server.errors import Unauthenticated
from server.keys.gate import RECHECK_SECONDS, KeysOrOpen
from server.keys.records import KeySpec
from server.keys.store import KeyStore
from server.pipeline.context import CallInfo, Principal
from server.storage.database import Database
from tests.limits.clock import Clock

CALL = CallInfo("req_1", {}, "127.0.0.1")
OPEN = Principal()


class GatedStore(KeyStore):
    """The real store, whose `has_keys` answers only once the test lets it."""

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        super().__init__(db, clock)
        self.asked = 0
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()
        self.answered = asyncio.Event()

    async def has_keys(self) -> bool:
        self.asked += 1
        self.waiting.set()
        await self.release.wait()
        found = await super().has_keys()
        # Set before returning: the gate's own continuation runs before any waiter wakes.
        self.answered.set()
        return found


@pytest.fixture
async def gated(store: KeyStore, database: Database, clock: Clock) -> GatedStore:
    return GatedStore(database, clock)  # `store` has migrated the database


async def authenticate_all(gate: KeysOrOpen, n: int) -> list[Principal]:
    return list(await asyncio.gather(*(gate.authenticate(CALL) for _ in range(n))))


async def test_concurrent_first_callers_share_one_ask(gated: GatedStore, clock: Clock) -> None:
    gate = KeysOrOpen(gated, open_allowed=True, clock=clock)
    callers = asyncio.ensure_future(authenticate_all(gate, 10))
    await asyncio.wait_for(gated.waiting.wait(), timeout=5)
    assert not callers.done()  # nothing is known yet: they wait for the first answer
    gated.release.set()
    assert await asyncio.wait_for(callers, timeout=5) == [OPEN] * 10
    assert gated.asked == 1


async def test_a_re_ask_runs_beside_requests_and_then_takes_effect(
    gated: GatedStore, clock: Clock
) -> None:
    gate = KeysOrOpen(gated, open_allowed=True, clock=clock)
    gated.release.set()
    assert await gate.authenticate(CALL) == OPEN
    await gated.create(KeySpec("acme"), create_organization=True)  # as another replica would
    assert await gate.authenticate(CALL) == OPEN  # within the second: not asked again
    assert gated.asked == 1

    gated.release.clear()
    gated.answered.clear()
    clock.advance(RECHECK_SECONDS)
    # The re-ask is stuck in the database; requests go on, on the last answer, and one
    # ask serves them all.
    assert await asyncio.wait_for(authenticate_all(gate, 5), timeout=5) == [OPEN] * 5
    assert gated.asked == 2
    gated.release.set()
    await asyncio.wait_for(gated.answered.wait(), timeout=5)
    with pytest.raises(Unauthenticated):
        await gate.authenticate(CALL)


async def test_a_key_made_here_takes_effect_at_once(gated: GatedStore, clock: Clock) -> None:
    gate = KeysOrOpen(gated, open_allowed=True, clock=clock)
    gated.release.set()
    assert await gate.authenticate(CALL) == OPEN
    gate.keyed()
    with pytest.raises(Unauthenticated):
        await gate.authenticate(CALL)


async def test_keys_are_required_where_open_is_not_allowed(gated: GatedStore) -> None:
    gate = KeysOrOpen(gated, open_allowed=False)
    with pytest.raises(Unauthenticated):
        await gate.authenticate(CALL)
    assert gated.asked == 0
