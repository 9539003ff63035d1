"""The real PostgreSQL and Redis servers the storage and limiter tests use.

Tests skip with the reason when a server is unreachable, except in CI (`CI`
set), where the machine has both and a skip would hide a broken path.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlparse

import asyncpg
import pytest

POSTGRES_URL = os.environ.get(
    "TOKENWIRE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TOKENWIRE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def require(url: str) -> None:
    """Skip (fail in CI) when nothing listens at `url`'s host and port."""
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=1).close()
    except OSError as e:
        reason = f"no server at {parsed.hostname}:{parsed.port} ({e})"
        if os.environ.get("CI"):
            pytest.fail(f"CI must not skip: {reason}")
        pytest.skip(reason)


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards: tests never collide."""
    require(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield f"{POSTGRES_URL}?search_path={schema}"
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
