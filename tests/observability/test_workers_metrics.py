"""`--workers 2`: one scrape of either worker counts the requests both served."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
from prometheus_client.samples import Sample

from server.observability.metrics import FLUSH_DELAY
from tests.observability.scrape import scrape, value
from tests.serving import serving

BODY = {"model": "fake-echo", "messages": [{"role": "user", "content": "a b c"}]}
CLIENTS = 24  # connections at once: all on one worker has odds of 2 in 2**24
CHAT = "gen_ai_server_request_duration_seconds_count"


async def test_a_scrape_sees_every_worker(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = f"sqlite://{tmp_path / 'tw.db'}"
    async with serving(db, "--workers", "2", "--data-dir", str(data)) as served:
        url = f"http://127.0.0.1:{served.http_port}/v1/chat/completions"
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(httpx.AsyncClient()) for _ in range(CLIENTS)]
            answers = await asyncio.gather(*(c.post(url, json=BODY) for c in clients))
        assert [a.status_code for a in answers] == [200] * CLIENTS
        # A worker flushes what it gathered at most FLUSH_DELAY after its last request (and
        # at its own scrapes): the count reaches every request within that.
        samples = await counted(served.http_port, CLIENTS)
        assert value(samples, "tokenwire_requests_in_flight") == 0
        files = list((data / "metrics").glob("*/histogram_*.db"))
        assert len(files) == 2, files  # each worker wrote its own file: both served
        for _ in range(4):  # new connections: the kernel spreads the scrapes over the workers
            samples = await scrape(served.http_port)
            assert value(samples, CHAT, gen_ai_provider_name="fake") == CLIENTS
    assert not list((data / "metrics").iterdir())  # the supervisor cleans up after them


async def counted(port: int, requests: int) -> list[Sample]:
    """The first scrape counting `requests` chat requests, within a bounded wait."""
    deadline = asyncio.get_running_loop().time() + 10 * FLUSH_DELAY + 5
    while True:
        samples = await scrape(port)
        seen = value(samples, CHAT, gen_ai_provider_name="fake")
        if seen == requests or asyncio.get_running_loop().time() > deadline:
            assert seen == requests
            return samples
        await asyncio.sleep(FLUSH_DELAY / 5)  # polls a condition other processes make true
