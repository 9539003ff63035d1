"""Server-Sent Events from a stream of RPC messages.

The HTTP status waits for the first message, so an error before any output is
a real HTTP error. If the first message is slow, the 200 goes out with a
`: keepalive` comment and more follow every interval. After the first byte an
error is one `data: {"error": …}` event and the end. A client that leaves
cancels the stream, which stops the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from google.protobuf.message import Message

from gateway.errors import GatewayError
from gateway.http import RawHeaders, Receive, Send
from gateway.invoker import RpcFailure

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keepalive\n\n"
SSE_HEADERS: RawHeaders = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies must not buffer the stream
]


def event(value: Any) -> bytes:
    return b"data: " + orjson.dumps(value) + b"\n\n"


class SseResponse:
    """Streams `messages` to one client as SSE."""

    def __init__(
        self,
        messages: AsyncIterator[Message],
        render: Callable[[Message], Any],
        headers: Callable[[], RawHeaders],
        keepalive: float,
        translate: Callable[[RpcFailure], GatewayError],
    ) -> None:
        self._messages = messages
        self._render = render
        self._headers = headers  # called at the status line: response metadata is in by then
        self._keepalive = keepalive
        self._translate = translate
        self.started = False

    async def __call__(self, send: Send, receive: Receive) -> None:
        """Stream until the end, an error, or the client's disconnect."""
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not pump.done():
                pump.cancel()  # the client left: closing the stream stops generation
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pump

    async def _pump(self, send: Send) -> None:
        messages = self._messages
        try:
            while True:
                message = await self._next(messages, send)
                if message is None:
                    break
                await self._send(send, event(self._render(message)))
            await self._send(send, DONE)
        except RpcFailure as failure:
            await self._fail(send, self._translate(failure))
        finally:
            await messages.aclose()  # type: ignore[attr-defined]
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _next(self, messages: AsyncIterator[Message], send: Send) -> Message | None:
        """The next message, sending keepalives while it is slow; None at the end."""
        step = asyncio.ensure_future(anext(messages, None))
        try:
            while True:
                done, _ = await asyncio.wait({step}, timeout=self._keepalive)
                if done:
                    return step.result()
                await self._send(send, KEEPALIVE)
        finally:
            if not step.done():  # the stream must be idle before anyone closes it
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await step

    async def _send(self, send: Send, data: bytes) -> None:
        if not self.started:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers()})
            self.started = True
        await send({"type": "http.response.body", "body": data, "more_body": True})

    async def _fail(self, send: Send, error: GatewayError) -> None:
        if not self.started:
            raise error  # nothing sent yet: the app answers with a real HTTP error
        await self._send(send, event(error.body()))


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
