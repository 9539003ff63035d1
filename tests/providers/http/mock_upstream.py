"""A real HTTP upstream on 127.0.0.1 that answers with httpx-style handlers.

Tests say what an upstream answers as a function from `httpx.Request` to
`httpx.Response`; `MockUpstream` serves those answers over a real socket
(aiohttp's server), so the provider under test speaks real HTTP through the
kind of `aiohttp.ClientSession` it makes itself (`session.new_session`).
A response body given as an `httpx.AsyncByteStream` is sent as it is
produced, chunk by chunk, and closed when the client goes away.

`session(handler)` returns a session bound to one handler: its resolver sends
every host name to this server, so URLs stay as the test wrote them
(`http://upstream.test/v1`), and a header tells the server which handler
answers (it is removed before the handler sees the request).
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import httpx
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from server.providers.http.session import new_session

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]

HANDLER_HEADER = "x-mock-handler"
# Framing is the server's to choose; the rest of a handler's headers go out as given.
_FRAMING = {"content-length", "transfer-encoding"}


class MockUpstream:
    """One aiohttp server on 127.0.0.1:0; handlers are registered per client session."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._ids = itertools.count()
        self._sessions: list[aiohttp.ClientSession] = []
        # Cancel a handler whose client went away, as a real server would notice.
        server = web.Server(self._serve, handler_cancellation=True)
        self._runner = web.ServerRunner(server, handle_signals=False)
        self.port = 0

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        await self.close_sessions()
        await self._runner.cleanup()

    def session(self, handler: Handler) -> aiohttp.ClientSession:
        """A session whose every request this server answers with `handler`."""
        key = str(next(self._ids))
        self._handlers[key] = handler
        resolver = Loopback(self.port)
        session = new_session(resolver=resolver, headers={HANDLER_HEADER: key})
        self._sessions.append(session)
        return session

    def url(self, handler: Handler) -> str:
        """The server's own address, answering requests that carry no handler header (as a
        provider's own session sends them) with `handler`."""
        self._handlers[""] = handler
        return f"http://127.0.0.1:{self.port}"

    async def close_sessions(self) -> None:
        for session in self._sessions:
            await session.close()
        self._sessions.clear()
        self._handlers.clear()

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        handler = self._handlers[request.headers.get(HANDLER_HEADER, "")]
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != HANDLER_HEADER]
        url = f"http://{request.host}{request.path_qs}"
        body = await request.read()
        answer = await handler(httpx.Request(request.method, url, headers=headers, content=body))
        out = {k: v for k, v in answer.headers.items() if k.lower() not in _FRAMING}
        if isinstance(answer.stream, httpx.ByteStream):
            return web.Response(status=answer.status_code, headers=out, body=answer.content)
        reply = web.StreamResponse(status=answer.status_code, headers=out)
        await reply.prepare(request)
        try:
            async for chunk in answer.aiter_raw():
                await reply.write(chunk)
        finally:
            await answer.aclose()
        await reply.write_eof()
        return reply


class Loopback(AbstractResolver):
    """Every host name resolves to 127.0.0.1 and `port`."""

    def __init__(self, port: int) -> None:
        self._port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        result: ResolveResult = {
            "hostname": host,
            "host": "127.0.0.1",
            "port": self._port,
            "family": socket.AF_INET,
            "proto": 0,
            "flags": socket.AI_NUMERICHOST,
        }
        return [result]

    async def close(self) -> None:
        pass


class Recorder:
    """A handler answering a fixed response and keeping the requests."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response

    def sent(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.requests[-1].content)
        return body


def stream_response(body: bytes, status: int = 200, /, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, headers={"content-type": "text/event-stream", **headers}, content=body
    )


ACTIVE: list[MockUpstream] = []  # the test session's server, while the fixture runs


def session_for(handler: Handler) -> aiohttp.ClientSession:
    """A session answered by `handler` on the active mock server (see conftest.py)."""
    assert ACTIVE, "the mock_upstream fixture is not active"
    return ACTIVE[0].session(handler)
