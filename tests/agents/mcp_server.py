"""An MCP server written with the official SDK (`MCPServer`, mcp 1.x's FastMCP), for the
agent tests: over stdio by default, over streamable HTTP with `--http` (on 127.0.0.1, a
port the OS picks, printed as `port <n>` on stdout).

Tools: `add`, `secret` (reads MCP_SECRET from its environment), `header` (the
x-token request header, HTTP only), `pid`, `slow` (sleeps), `crash` (the process exits).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("tokenwire-test-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def secret() -> str:
    """The MCP_SECRET variable of the server's environment."""
    return os.environ.get("MCP_SECRET", "(unset)")


@server.tool()
def header(ctx: Context) -> str:
    """The x-token header of the HTTP request that called it."""
    request = ctx.request_context.request
    return str(request.headers.get("x-token", "(none)")) if request is not None else "(stdio)"


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "slept"


@server.tool()
def crash() -> str:
    """End the server's process at once."""
    os._exit(3)


async def serve_http() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    print(f"port {sock.getsockname()[1]}", flush=True)
    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    if "--http" in sys.argv:
        asyncio.run(serve_http())
    else:
        server.run("stdio")
