"""A raw TCP server on 127.0.0.1:0 whose connections a test drives byte by byte.

`serving(handle)` runs `handle(reader, writer)` for each connection, closes the
writer after it, and on exit stops the server and cancels the handlers still
running, so a test that leaves a connection hanging ends cleanly. `http_chunk`
frames bytes as one chunk of a chunked body; `refused_port` is where nothing
listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

Handle = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handle: Handle, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """The port of a server running `handle` on each connection (over TLS with `tls`)."""
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handle(reader, writer)
        except ConnectionError:
            pass  # the client went away: what a test observes, not a server failure
        except asyncio.CancelledError:
            pass  # torn down at the end of the test (uncaught, asyncio would log it)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def refused_port() -> int:
    """A loopback port nothing listens on (the OS just handed it out and took it back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
