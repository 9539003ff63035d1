"""Usage records of answered requests survive `kill -9`: a real `tokenwire serve` process,
killed with SIGKILL right after its last answer, replays its journal when it starts again."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.backends import postgres_schema
from tests.serving import serving

BODY = {"model": "fake-echo", "messages": [{"role": "user", "content": "a b c"}]}
REQUESTS = 200


@asynccontextmanager
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite://{tmp_path / 'tokenwire.db'}"
    else:
        async with postgres_schema() as url:
            yield url


async def count_records(url: str) -> int:
    if url.startswith("sqlite://"):
        with sqlite3.connect(url.removeprefix("sqlite://")) as conn:
            (count,) = conn.execute("SELECT count(*) FROM usage_records").fetchone()
        return int(count)
    base, _, schema = url.partition("?search_path=")
    conn = await asyncpg.connect(base, server_settings={"search_path": schema})
    try:
        return int(await conn.fetchval("SELECT count(*) FROM usage_records"))
    finally:
        await conn.close()


async def answer_all(http_port: int, streamed: bool) -> list[int]:
    """REQUESTS requests, 16 at a time, then one alone (the last, killed right after its
    answer); each answer read to its last byte."""
    url = f"http://127.0.0.1:{http_port}/v1/chat/completions"
    limit = asyncio.Semaphore(16)

    async def one(http: httpx.AsyncClient) -> int:
        async with limit:
            response = await http.post(url, json={**BODY, "stream": streamed})
            assert not streamed or response.text.endswith("data: [DONE]\n\n")
            return response.status_code

    async with httpx.AsyncClient(timeout=30) as http:
        statuses = await asyncio.gather(*(one(http) for _ in range(REQUESTS - 1)))
        return [*statuses, await one(http)]


@pytest.mark.parametrize("streamed", [False, True], ids=["unary", "streamed"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_kill_9_keeps_every_answered_requests_usage(
    backend: str, streamed: bool, tmp_path: Path
) -> None:
    data_dir = ("--data-dir", str(tmp_path / "data"))
    async with database_url(backend, tmp_path) as url:
        async with serving(url, *data_dir, clean_exit=False) as served:
            statuses = await answer_all(served.http_port, streamed)
            os.kill(served.process.pid, signal.SIGKILL)  # no chance to write anything more
            await served.process.wait()
        assert statuses == [200] * REQUESTS
        async with serving(url, *data_dir) as again, httpx.AsyncClient() as http:
            # Answering proves it serves (and handles SIGTERM: cli installs that after the
            # start-up line); start-up replayed what the killed one left before that line.
            await http.get(f"http://127.0.0.1:{again.http_port}/v1/models")
            assert await count_records(url) == REQUESTS
        assert await count_records(url) == REQUESTS  # and nothing twice after a clean stop
    assert not list((tmp_path / "data").rglob("*.jsonl"))  # the journal is empty again
