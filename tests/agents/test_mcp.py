"""MCP servers as agent tools: an `MCPServer` (the SDK's FastMCP) over stdio and over
streamable HTTP on 127.0.0.1, driven by the scripted model through the official SDK."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.agents.harness import Agents, agent, agents_running
from tests.agents.scripted import call, say
from tests.conftest import StartService, user_turn

SERVER = str(Path(__file__).with_name("mcp_server.py"))


def stdio(timeout: float | None = None, **fields: Any) -> dict[str, Any]:
    mcp = {"server_label": "t", "command": sys.executable, "args": [SERVER], **fields}
    return {"type": "mcp", "mcp": mcp, **({"timeout_seconds": timeout} if timeout else {})}


@pytest.fixture
async def agents(start_service: StartService, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TW_TEST_SECRET", "s3cret")
    async with agents_running(start_service, mcp_env=("TW_TEST_SECRET",)) as running:
        yield running


@contextlib.asynccontextmanager
async def http_server() -> AsyncIterator[str]:
    """The test MCP server over streamable HTTP; yields its URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, SERVER, "--http", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        yield f"http://127.0.0.1:{int(line.split()[1])}/mcp"
    finally:
        process.kill()
        await process.wait()


async def ask(agents: Agents, model: str = "agent/helper") -> Any:
    async with agents.sdk() as client:
        return await client.chat.completions.create(model=model, messages=user_turn("go"))


def results(agents: Agents, i: int) -> list[str]:
    return [m["content"] for m in agents.model.sent(i) if m["role"] == "tool"]


async def test_stdio_server_tools_run_filtered_and_with_named_env(agents: Agents) -> None:
    tools = stdio(env={"MCP_SECRET": "TW_TEST_SECRET"}, allowed_tools=["add", "secret"])
    await agents.create(agent("helper", tools))
    agents.model.queue(call(("t__add", {"a": 2, "b": 3}), ("t__secret", {})), say("5"))
    completion = await ask(agents)
    assert completion.choices[0].message.content == "5"
    assert results(agents, 1) == ["5", "s3cret"]
    shown = {t["function"]["name"] for t in agents.model.requests[0].body["tools"]}
    assert shown == {"t__add", "t__secret"}


async def test_stdio_server_is_reused_restarted_after_a_crash_and_timed_out(
    agents: Agents,
) -> None:
    await agents.create(agent("helper", stdio()))
    await agents.create(agent("quick", stdio(timeout=1.0)))
    agents.model.queue(call(("t__pid", {})), say("a"), call(("t__pid", {})), say("b"))
    await ask(agents)
    await ask(agents)
    first, second = results(agents, 1)[0], results(agents, 3)[0]
    assert first == second  # one process served both requests
    agents.model.queue(call(("t__crash", {})), call(("t__pid", {})), say("c"))
    await ask(agents)
    crashed, restarted = results(agents, 5)[-1], results(agents, 6)[-1]
    assert crashed.startswith("Error: MCP server t failed calling crash")
    assert restarted.isdigit() and restarted != first
    agents.model.queue(call(("t__slow", {"seconds": 30})), say("d"))
    await ask(agents, "agent/quick")
    assert results(agents, 8) == ["Error: timed out after 1 s"]


async def test_the_wall_clock_budget_cuts_a_slow_tool_and_stops_the_loop(agents: Agents) -> None:
    await agents.create(agent("hasty", stdio(), limits={"timeout_seconds": 1.0}))
    agents.model.queue(call(("t__slow", {"seconds": 30})), say("never"))
    completion = await ask(agents, "agent/hasty")
    run = completion.model_extra["agent"]
    assert run["stopped_by"] == "timeout" and len(agents.model.requests) == 1
    async with agents.rest() as rest:
        steps = (await rest.get(f"/v1/sessions/{run['session_id']}")).json()["steps"]
    assert steps[1]["error"].startswith("timed out after 0.")


async def test_a_command_the_service_does_not_allow_is_403(agents: Agents) -> None:
    await agents.create(
        agent("helper", {"type": "mcp", "mcp": {"server_label": "x", "command": "sh"}})
    )
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await ask(agents)
    assert refused.value.response.json()["error"]["code"] == "mcp_command_not_allowed"


async def test_streamable_http_server_with_headers_from_env(
    start_service: StartService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TW_TEST_TOKEN", "tok-1")
    settings = {"mcp_env": ("TW_TEST_TOKEN",), "agent_private_hosts": True}
    async with http_server() as url, agents_running(start_service, **settings) as agents:
        mcp = {"server_label": "h", "url": url, "headers": {"x-token": "TW_TEST_TOKEN"}}
        await agents.create(agent("helper", {"type": "mcp", "mcp": mcp}))
        agents.model.queue(call(("h__add", {"a": 40, "b": 2}), ("h__header", {})), say("42"))
        completion = await ask(agents)
    assert completion.choices[0].message.content == "42"
    assert results(agents, 1) == ["42", "tok-1"]


async def test_an_http_server_on_loopback_is_refused_unless_allowed(agents: Agents) -> None:
    mcp = {"server_label": "h", "url": "http://127.0.0.1:9/mcp"}
    await agents.create(agent("helper", {"type": "mcp", "mcp": mcp}))
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await ask(agents)
    assert refused.value.response.json()["error"]["code"] == "mcp_url_refused"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
