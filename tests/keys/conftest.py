"""A key store on each real database (SQLite file, PostgreSQL schema), on a hand-moved clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.keys.migrations import MIGRATIONS as KEYS
from server.keys.store import KeyStore
from server.storage.database import Database
from server.storage.migrations import migrate
from server.usage.migrations import MIGRATIONS as USAGE
from tests.keys.harness import Served, serve
from tests.limits.clock import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(database: Database, clock: Clock) -> KeyStore:
    await migrate(database, KEYS + USAGE)
    return KeyStore(database, clock)


@pytest.fixture
async def served(database: Database, clock: Clock) -> AsyncIterator[Served]:
    async with serve(database, clock) as s:
        yield s
