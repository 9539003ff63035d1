"""The tools of one agent run: built from the agent's definition, checked against what
the service allows (`ToolConfig`), each with its policy (timeout, approval).

Names the client sends in `tools` are client tools: the loop hands their calls
back, as it does those of tools needing approval.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from server.agents.guard import Limits
from server.agents.tools import http_fetch, ssrf
from server.agents.tools.base import Policy, ServerTool
from server.agents.tools.builtins import CurrentTime, MemorySearch, MemoryWrite
from server.agents.tools.calculator import Calculator
from server.agents.tools.mcp import McpPool, McpTarget, McpTool
from server.errors import InvalidRequest, PermissionDenied
from server.memory.model import Scope
from server.memory.store import MemoryStore
from tokenwire.agents.v1 import agents_pb2
from tokenwire.chat.v1 import message_pb2


@dataclass(frozen=True, slots=True)
class ToolConfig:
    """What the service lets agents do beyond the built-ins."""

    # Commands a stdio MCP server may be started with (exact); none: stdio refused.
    mcp_commands: frozenset[str] = frozenset()
    # Variables of the service's environment agents may hand MCP servers, by name.
    environ: Mapping[str, str] = field(default_factory=dict)
    # Whether tools may reach private, loopback and link-local addresses.
    allow_private: bool = False


@dataclass
class ToolSet:
    tools: dict[str, ServerTool] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    client: frozenset[str] = frozenset()

    def add(self, tool: ServerTool, policy: Policy) -> None:
        self.tools[tool.name] = tool
        self.policies[tool.name] = policy

    def definitions(self) -> list[message_pb2.Tool]:
        return [t.definition for t in self.tools.values()]

    def handed_back(self, name: str) -> bool:
        """Whether a call of `name` goes back to the client instead of running here."""
        policy = self.policies.get(name)
        return name in self.client or (policy is not None and policy.approval)


class Toolbox:
    def __init__(
        self,
        config: ToolConfig,
        memories: MemoryStore,
        pool: McpPool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._memories = memories
        self.pool = pool or McpPool()
        self._clock = clock
        self._http: aiohttp.ClientSession | None = None

    async def for_run(
        self,
        agent: agents_pb2.Agent,
        scope: Scope,
        limits: Limits,
        client_tools: Iterable[message_pb2.Tool],
    ) -> ToolSet:
        toolset = ToolSet(client=frozenset(t.function.name for t in client_tools))
        for spec in agent.tools:
            timeout = (
                spec.timeout_seconds if spec.HasField("timeout_seconds") else limits.tool_timeout
            )
            if spec.type == "mcp":
                await self._add_mcp(toolset, spec.mcp, timeout)
            else:
                toolset.add(self._builtin(spec, scope, timeout), Policy(timeout, spec.approval))
        taken = toolset.client & toolset.tools.keys()
        if taken:
            raise InvalidRequest(
                f"Client tools may not reuse the agent's tool names: {', '.join(sorted(taken))}.",
                param="tools",
            )
        return toolset

    def _builtin(self, spec: agents_pb2.AgentTool, scope: Scope, timeout: float) -> ServerTool:
        if spec.type == "calculator":
            return Calculator()
        if spec.type == "current_time":
            return CurrentTime(self._clock)
        if spec.type == "memory_search":
            return MemorySearch(self._memories, scope)
        if spec.type == "memory_store":
            return MemoryWrite(self._memories, scope)
        settings = spec.http_fetch
        rules = http_fetch.FetchRules(
            allowed_hosts=frozenset(settings.allowed_hosts),
            max_bytes=settings.max_bytes
            if settings.HasField("max_bytes")
            else http_fetch.DEFAULT_MAX_BYTES,
            allow_private=self.config.allow_private,
            timeout=timeout,
        )
        return http_fetch.HttpFetch(self._session(), rules)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:  # made on first use: it needs the running loop
            self._http = http_fetch.session(self.config.allow_private)
        return self._http

    async def _add_mcp(
        self, toolset: ToolSet, server: agents_pb2.McpServer, timeout: float
    ) -> None:
        target = await self.target(server)
        approval = frozenset(server.approval_tools)
        allowed = frozenset(server.allowed_tools)
        for tool in await self.pool.tools(target):
            if allowed and tool.name not in allowed:
                continue
            wrapped = McpTool(self.pool, target, tool)
            toolset.add(wrapped, Policy(timeout, tool.name in approval))

    async def target(self, server: agents_pb2.McpServer) -> McpTarget:
        """The server as the pool knows it, once the service's rules allow it."""
        if server.HasField("command"):
            if server.command not in self.config.mcp_commands:
                raise PermissionDenied(
                    f"This service does not start MCP servers with {server.command!r}.",
                    param="mcp.command",
                    code="mcp_command_not_allowed",
                )
            env = self._variables(server.env, "mcp.env")
            return McpTarget(server.server_label, server.command, tuple(server.args), env)
        await self._check_url(server.url)
        headers = self._variables(server.headers, "mcp.headers")
        return McpTarget(server.server_label, url=server.url, headers=headers)

    def _variables(self, named: Mapping[str, str], param: str) -> tuple[tuple[str, str], ...]:
        values = []
        for key, variable in sorted(named.items()):
            if variable not in self.config.environ:
                raise InvalidRequest(
                    f"The service does not pass the variable {variable!r} to agents.", param=param
                )
            values.append((key, self.config.environ[variable]))
        return tuple(values)

    async def _check_url(self, url: str) -> None:
        host = urlsplit(url).hostname or ""
        if self.config.allow_private:
            return
        literal = ssrf.ip_literal(host)
        addresses = [literal] if literal else await _resolve(host)
        for address in addresses:
            try:
                ssrf.check_address(host, address, allow_private=False)
            except Exception as e:
                raise PermissionDenied(str(e), param="mcp.url", code="mcp_url_refused") from None

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self._http is not None:
            await self._http.close()


async def _resolve(host: str) -> list[str]:
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return []
    return [str(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in found]
