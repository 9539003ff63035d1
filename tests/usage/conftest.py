"""A usage store on each real database, and the served slice for service tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.keys.migrations import MIGRATIONS as KEYS
from server.storage.database import Database
from server.storage.migrations import migrate
from server.usage.migrations import MIGRATIONS as USAGE
from server.usage.store import UsageStore
from tests.keys.harness import Served, serve
from tests.limits.clock import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def usage(database: Database) -> UsageStore:
    await migrate(database, KEYS + USAGE)
    return UsageStore(database)


@pytest.fixture
async def served(database: Database, clock: Clock) -> AsyncIterator[Served]:
    async with serve(database, clock) as s:
        yield s
