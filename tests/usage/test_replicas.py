"""Two replicas on one database (two connections/pools): one ledger, one set of records."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from server.keys.ledger import KeyLedger
from server.keys.migrations import MIGRATIONS as KEYS
from server.keys.records import KeySpec
from server.keys.store import KeyStore
from server.storage.database import Database, open_database
from server.storage.migrations import migrate
from server.usage.migrations import MIGRATIONS as USAGE
from server.usage.query import UsageFilter
from server.usage.store import UsageStore
from tests.backends import postgres_schema
from tests.usage.factories import record


@asynccontextmanager
async def two_replicas(backend: str, tmp_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    if backend == "sqlite":
        url = f"sqlite://{tmp_path / 'shared.db'}"
        a, b = await open_database(url), await open_database(url)
        yield a, b
    else:
        async with postgres_schema() as url:
            a, b = await open_database(url), await open_database(url)
            yield a, b
    await a.close()
    await b.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_two_replicas_keep_one_ledger(backend: str, tmp_path: Path) -> None:
    async with two_replicas(backend, tmp_path) as (a, b):
        applied = await asyncio.gather(migrate(a, KEYS + USAGE), migrate(b, KEYS + USAGE))
        # one replica migrated, the other saw it
        assert sorted(len(x) for x in applied) == [0, len(KEYS + USAGE)]
        issued = await KeyStore(a).create(KeySpec("acme"), create_organization=True)
        ledgers, sinks = (KeyLedger(a), KeyLedger(b)), (UsageStore(a), UsageStore(b))
        await asyncio.gather(
            *(ledgers[i % 2].charge(issued.key.id, 0.25) for i in range(40)),
            *(
                sinks[i % 2].record(record(request_id=f"r{i}", key_id=issued.key.id))
                for i in range(40)
            ),
        )
        await sinks[0].flush()  # each replica's writes land before another replica reads
        assert (await KeyStore(b).get(issued.key.id)).spent_usd == 10.0
        assert (await sinks[1].total(UsageFilter(key_id=issued.key.id))).requests == 40
        assert (await KeyStore(b).verify(issued.secret)).id == issued.key.id
