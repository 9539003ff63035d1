"""What an agent must be before it is stored; each refusal is a 400 naming the field."""

from __future__ import annotations

import re

from server.errors import InvalidRequest
from server.templates import validate as template_validate
from tokenwire.agents.v1 import agents_pb2

AGENT_PREFIX = "agent/"
BUILTINS = frozenset({"calculator", "current_time", "memory_search", "memory_store", "http_fetch"})
LABEL = re.compile(r"[A-Za-z0-9_-]{1,32}")
MAX_TOOLS = 32
MAX_STEPS = 50
MAX_FETCH_BYTES = 10 * 1024 * 1024


def agent(a: agents_pb2.Agent) -> None:
    """Refuse an agent that could not be stored or run."""
    template_validate.name(a.name)
    if not a.model or a.model.startswith(AGENT_PREFIX):
        raise InvalidRequest("'model' must name a model (not an agent).", param="model")
    if len(a.tools) > MAX_TOOLS:
        raise InvalidRequest(f"'tools' takes at most {MAX_TOOLS}.", param="tools")
    labels = [tool(t, f"tools[{i}]") for i, t in enumerate(a.tools)]
    if len(set(labels)) != len(labels):
        raise InvalidRequest("Each tool must appear once (MCP labels too).", param="tools")
    limits(a.limits)


def tool(t: agents_pb2.AgentTool, param: str) -> str:
    """Check one tool; returns the name it is known by (an MCP server: its label)."""
    if t.type == "mcp":
        _mcp(t.mcp, f"{param}.mcp")
        return f"mcp:{t.mcp.server_label}"
    if t.type not in BUILTINS:
        known = ", ".join(sorted(BUILTINS | {"mcp"}))
        raise InvalidRequest(f"'{param}.type' must be one of {known}.", param=f"{param}.type")
    fetch = t.http_fetch
    if fetch.HasField("max_bytes") and not 1 <= fetch.max_bytes <= MAX_FETCH_BYTES:
        raise InvalidRequest(
            f"'max_bytes' must be in [1, {MAX_FETCH_BYTES}].", param=f"{param}.http_fetch.max_bytes"
        )
    if t.type == "http_fetch" and not t.http_fetch.allowed_hosts:
        raise InvalidRequest(
            "http_fetch needs 'allowed_hosts'.", param=f"{param}.http_fetch.allowed_hosts"
        )
    _positive(
        t.timeout_seconds if t.HasField("timeout_seconds") else None, f"{param}.timeout_seconds"
    )
    return t.type


def _mcp(server: agents_pb2.McpServer, param: str) -> None:
    if not LABEL.fullmatch(server.server_label):
        raise InvalidRequest(
            "'server_label' must be 1 to 32 letters, digits, '_' or '-'.",
            param=f"{param}.server_label",
        )
    if server.HasField("command") == server.HasField("url"):
        raise InvalidRequest("An MCP server needs exactly one of 'command' and 'url'.", param=param)
    if server.HasField("url") and not server.url.startswith(("http://", "https://")):
        raise InvalidRequest("'url' must be http:// or https://.", param=f"{param}.url")


def limits(lim: agents_pb2.AgentLimits) -> None:
    given = {f.name: v for f, v in lim.ListFields()}
    if not 1 <= given.get("max_steps", 1) <= MAX_STEPS:
        raise InvalidRequest(f"'max_steps' must be in [1, {MAX_STEPS}].", param="limits.max_steps")
    for name in ("max_tool_calls", "max_tokens", "max_repeated_calls"):
        if given.get(name, 1) < 1:
            raise InvalidRequest(f"'{name}' must be at least 1.", param=f"limits.{name}")
    for name in ("timeout_seconds", "max_cost_usd", "tool_timeout_seconds"):
        _positive(given.get(name), f"limits.{name}")


def _positive(value: float | None, param: str) -> None:
    if value is not None and not value > 0:
        raise InvalidRequest(f"'{param}' must be positive.", param=param)
