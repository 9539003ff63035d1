"""Server-Sent Events from a stream of RPC messages.

The HTTP status waits for the first message, so an error before any output is
a real HTTP error. If the first message is slow, the 200 goes out with a
`: keepalive` comment once the response metadata is in (its headers ride on the
status line) and more follow every interval. After the first byte an
error is one `data: {"error": …}` event and the end. A client that leaves
cancels the stream (noticed as for a whole answer: see `gateway.disconnect`),
which stops the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from google.protobuf.message import Message

from gateway.disconnect import unless_disconnected
from gateway.errors import SHUTTING_DOWN, GatewayError
from gateway.http import RawHeaders, Receive, Send, send_json
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
        metadata_in: asyncio.Event,
        keepalive: float,
        translate: Callable[[RpcFailure], GatewayError],
    ) -> None:
        self._messages = messages
        self._render = render
        # Called at the status line, which waits for the response metadata: the first
        # message, or `metadata_in` for a keepalive.
        self._headers = headers
        self._metadata_in = metadata_in
        self._keepalive = keepalive
        self._translate = translate
        self.started = False
        self.ended = False  # cut off: nothing more may be sent
        self._sending = asyncio.Lock()  # the pump and the keepalives take turns
        self._keeping_alive = False  # a keepalive task runs: sends take the lock
        self._sent_at = 0.0  # loop time of the last send

    async def __call__(self, send: Send, receive: Receive) -> None:
        """Stream until the end, an error, or the client's disconnect.

        The stream runs in the request's own task: a task of its own would cost a loop
        turn before the first event. The client leaving is watched as for a whole answer
        (`unless_disconnected`), and closing the stream then stops the provider.
        """
        try:
            await unless_disconnected(self._pump(send), receive)
        except OSError:
            pass  # the client left (ConnectionAbortedError): the stream is closed
        except asyncio.CancelledError:
            # Only the server cancels a response: its stop's grace period ran out. The
            # call heard the server's reason (the cancellation's message); the client
            # hears why the stream ends, rather than seeing it just stop.
            await self._cut_off(send)
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # answered: done

    async def _pump(self, send: Send) -> None:
        messages = self._messages
        loop = asyncio.get_running_loop()
        self._sent_at = loop.time()
        # Most streams end within one interval: a timer starts the keepalive task only for
        # those that last longer, sparing the rest a task.
        keepalives: list[asyncio.Task[None]] = []

        def keep_alive() -> None:
            self._keeping_alive = True
            keepalives.append(asyncio.create_task(self._keepalives(send)))

        timer = loop.call_later(self._keepalive, keep_alive)
        render = self._render
        try:
            async for message in messages:
                data = event(render(message))
                if self._keeping_alive or self.ended or not self.started:
                    await self._send(send, data)
                else:  # alone, the pump needs no lock (the usual stream, per event)
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                    self._sent_at = loop.time()
            await self._send(send, DONE)
        except RpcFailure as failure:
            await self._fail(send, self._translate(failure))
        finally:
            timer.cancel()
            for task in keepalives:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
            await messages.aclose()  # type: ignore[attr-defined]
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _keepalives(self, send: Send) -> None:
        """A keepalive comment whenever an interval passes with nothing sent.

        One timer per stream: waiting on each message with a timeout cost a task and a
        timer per message, more than the rest of the gateway's work on it.
        """
        if not self.started:
            # The first keepalive starts the response: not before the server's initial
            # metadata (rate limits, memory ids) is in, or its headers would be lost.
            await self._metadata_in.wait()
        loop = asyncio.get_running_loop()
        while True:
            quiet = loop.time() - self._sent_at
            if quiet >= self._keepalive:
                await self._send(send, KEEPALIVE)
            else:
                await asyncio.sleep(self._keepalive - quiet)

    async def _send(self, send: Send, data: bytes) -> None:
        async with self._sending:
            if self.ended:
                return
            if not self.started:
                self.started = True  # before the await: `_fail` must not start another response
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self._headers()}
                )
            await send({"type": "http.response.body", "body": data, "more_body": True})
        self._sent_at = asyncio.get_running_loop().time()

    async def _cut_off(self, send: Send) -> None:
        """The shutdown error as the stream's last event (or the whole answer, if none began)."""
        with contextlib.suppress(OSError):
            async with self._sending:
                self.ended = True  # keepalives still pending send nothing after this
                if not self.started:
                    self.started = True
                    await send_json(send, SHUTTING_DOWN.status, SHUTTING_DOWN.body(), [])
                    return
                body = event(SHUTTING_DOWN.body())
                await send({"type": "http.response.body", "body": body, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _fail(self, send: Send, error: GatewayError) -> None:
        if not self.started:
            raise error  # nothing sent yet: the app answers with a real HTTP error
        await self._send(send, event(error.body()))
