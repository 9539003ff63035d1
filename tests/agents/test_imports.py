"""The MCP SDK (and pydantic, httpx2, starlette with it: ~40 MiB) is imported when an agent
first connects to an MCP server, not with the agents' tools: most processes never do."""

from __future__ import annotations

from tests.imports import loaded_after


def test_the_agent_tools_import_no_mcp_sdk() -> None:
    heavy = ("mcp", "mcp_types", "httpx2")
    assert loaded_after("import server.agents.tools.mcp, server.runtime.compose", heavy) == []
