"""MCP servers as agent tools, through the official `mcp` SDK's `Client`.

A `McpPool` holds one connection per server (stdio command line, or
streamable HTTP URL with headers), started lazily on first use, reused across
requests, replaced when it dies or a call breaks it, and closed on shutdown.
Each connection is owned by one task, because anyio's cancel scopes inside the
SDK must be left by the task that entered them; callers only send requests.
The model sees a server's tools as `<server_label>__<tool>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.agents.tools.base import function
from server.errors import ToolFailed

if TYPE_CHECKING:  # the SDK is imported on first use: ~40 MiB in every process otherwise
    import mcp_types
    from mcp import Client

log = logging.getLogger("tokenwire.agents.mcp")

SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class McpTarget:
    """Where an MCP server is and how to start it; equal targets share one connection."""

    label: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        return self.url or " ".join((self.command or "", *self.args))


@dataclass(frozen=True, slots=True)
class McpRules:
    connect_timeout: float = 20.0


class McpConnection:
    """One live session with one server, owned by its own task."""

    def __init__(self, target: McpTarget, rules: McpRules) -> None:
        self.target = target
        self._rules = rules
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._task = asyncio.ensure_future(self._own())
        self.tools: list[mcp_types.Tool] | None = None  # listed once per connection
        self.broken = False

    @property
    def alive(self) -> bool:
        return not self._task.done() and not self.broken

    async def client(self) -> Client:
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), self._rules.connect_timeout)
        except TimeoutError:
            self.broken = True
            raise ToolFailed(f"MCP server {self.target.label} did not start in time") from None

    async def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(self._task, self._rules.connect_timeout)

    async def _own(self) -> None:
        try:
            async with _client(self.target) as client:
                self._ready.set_result(client)
                await self._stop.wait()
        except Exception as e:  # the SDK's errors, a command that does not start…
            log.warning("MCP server %s ended: %s", self.target.describe(), e)
            if not self._ready.done():
                self._ready.set_exception(ToolFailed(f"MCP server {self.target.label} failed: {e}"))
        finally:
            self.broken = True


def _client(target: McpTarget) -> Client:
    import httpx2
    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client

    if target.command is not None:
        params = StdioServerParameters(
            command=target.command, args=list(target.args), env=dict(target.env)
        )
        return Client(params)
    assert target.url is not None
    http = httpx2.AsyncClient(
        headers=dict(target.headers), timeout=httpx2.Timeout(30.0, read=300.0)
    )
    return Client(streamable_http_client(target.url, http_client=http))


@dataclass
class McpPool:
    rules: McpRules = field(default_factory=McpRules)
    _connections: dict[McpTarget, McpConnection] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _closing: set[asyncio.Future[None]] = field(default_factory=set)  # dead ones, being closed

    async def tools(self, target: McpTarget) -> list[mcp_types.Tool]:
        """The server's tools (listed once per connection)."""
        connection = await self._connection(target)
        if connection.tools is None:
            try:
                listed = await (await connection.client()).list_tools()
            except ToolFailed:
                raise
            except Exception as e:
                connection.broken = True
                raise ToolFailed(f"MCP server {target.label}: cannot list tools: {e}") from None
            connection.tools = list(listed.tools)
        return connection.tools

    async def call(self, target: McpTarget, tool: str, arguments: dict[str, Any]) -> str:
        """The tool's result as text; a failed call, or an error result, is `ToolFailed`."""
        connection = await self._connection(target)
        client = await connection.client()
        try:
            result = await client.call_tool(tool, arguments)
        except asyncio.CancelledError:
            connection.broken = True  # a timed-out call may leave the session stuck
            raise
        except Exception as e:
            connection.broken = True
            raise ToolFailed(f"MCP server {target.label} failed calling {tool}: {e}") from None
        text = result_text(result)
        if result.is_error:
            raise ToolFailed(text or f"{tool} failed")
        return text

    async def _connection(self, target: McpTarget) -> McpConnection:
        async with self._lock:
            current = self._connections.get(target)
            if current is not None and current.alive:
                return current
            if current is not None:  # dead: restart it
                closing = asyncio.ensure_future(current.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            self._connections[target] = McpConnection(target, self.rules)
            return self._connections[target]

    async def aclose(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.close() for c in connections))


def result_text(result: mcp_types.CallToolResult) -> str:
    import mcp_types

    parts = [b.text for b in result.content if isinstance(b, mcp_types.TextContent)]
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content)
    return "\n".join(parts)


class McpTool:
    """One tool of one MCP server, as the model sees it."""

    def __init__(self, pool: McpPool, target: McpTarget, tool: mcp_types.Tool) -> None:
        self._pool, self._target, self._tool = pool, target, tool
        self.name = f"{target.label}{SEPARATOR}{tool.name}"
        schema = tool.input_schema or {"type": "object", "properties": {}}
        self.definition = function(self.name, tool.description or tool.name, {}, [])
        self.definition.function.parameters = json.dumps(schema)

    async def run(self, arguments: dict[str, Any]) -> str:
        return await self._pool.call(self._target, self._tool.name, arguments)
