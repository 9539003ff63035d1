"""Built-in tools through the loop: `http_fetch` behind its SSRF guard, and the
organization's memory (`memory_store`, `memory_search`, recall into each model call)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.agents.harness import Agents, agent, agents_running
from tests.agents.scripted import call, say
from tests.conftest import StartService, user_turn


@contextlib.asynccontextmanager
async def page(body: str) -> AsyncIterator[int]:
    """A web server on 127.0.0.1 answering every GET with `body`; yields its port."""

    async def answer(_: web.Request) -> web.Response:
        return web.Response(text=body)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield sock.getsockname()[1]
    finally:
        await runner.cleanup()


def fetcher(*hosts: str, **settings: Any) -> dict[str, Any]:
    return {"type": "http_fetch", "http_fetch": {"allowed_hosts": list(hosts), **settings}}


async def fetched(agents: Agents, *urls: str) -> list[str]:
    """What the model got back for fetching each URL in one step."""
    agents.model.queue(call(*(("http_fetch", {"url": u}) for u in urls)), say("ok"))
    async with agents.sdk() as client:
        await client.chat.completions.create(model="agent/web", messages=user_turn("fetch"))
    return [m["content"] for m in agents.model.sent(-1) if m["role"] == "tool"]


async def test_ssrf_guard_refuses_loopback_private_and_names_resolving_to_them(
    start_service: StartService,
) -> None:
    hosts = ("127.0.0.1", "localhost", "10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1")
    async with page("secret") as port, agents_running(start_service) as agents:
        await agents.create(agent("web", fetcher(*hosts)))
        results = await fetched(
            agents,
            f"http://127.0.0.1:{port}/",
            f"http://localhost:{port}/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            f"http://[::ffff:127.0.0.1]:{port}/",
            "http://example.org/",
            "file:///etc/passwd",
        )
    assert all(r.startswith("Error: refused: ") for r in results[:5]), results
    assert "resolves to 127.0.0.1" in results[1]
    assert results[5] == "Error: refused: example.org is not an allowed host"
    assert results[6] == "Error: the URL must be http:// or https:// with a host"
    assert not any("secret" in r for r in results)


async def test_fetch_works_where_private_hosts_are_allowed_and_is_capped(
    start_service: StartService,
) -> None:
    async with (
        page("x" * 100) as port,
        agents_running(start_service, agent_private_hosts=True) as agents,
    ):
        await agents.create(agent("web", fetcher("127.0.0.1", max_bytes=10)))
        (result,) = await fetched(agents, f"http://127.0.0.1:{port}/page")
    assert result == "HTTP 200 (truncated)\n" + "x" * 10


@pytest.fixture
async def agents(start_service: StartService) -> Any:
    async with agents_running(start_service) as running:
        tools = ({"type": "memory_store"}, {"type": "memory_search"})
        await running.create(agent("keeper", *tools))
        await running.create(agent("keeper", *tools), org="other")
        yield running


async def keeper(agents: Agents, text: str, org: str = "acme") -> Any:
    async with agents.sdk(org) as client:
        return await client.chat.completions.create(model="agent/keeper", messages=user_turn(text))


async def test_memory_tools_store_search_and_recall_per_organization(agents: Agents) -> None:
    agents.model.queue(call(("memory_store", {"content": "The launch code is 4242."})), say("ok"))
    await keeper(agents, "remember the launch code 4242")
    agents.model.queue(call(("memory_search", {"query": "launch code"})), say("4242"))
    await keeper(agents, "what is the launch code?")
    found = [m["content"] for m in agents.model.sent(-1) if m["role"] == "tool"]
    assert "The launch code is 4242." in found[0]
    recalled = agents.model.sent(-2)[0]
    assert recalled["role"] == "system" and "4242" in recalled["content"]
    agents.model.queue(call(("memory_search", {"query": "launch code"})), say("?"))
    await keeper(agents, "what is the launch code?", org="other")
    assert [m["content"] for m in agents.model.sent(-1) if m["role"] == "tool"] == [
        "No memories match."
    ]
    assert all("4242" not in str(m) for m in agents.model.sent(-1))
