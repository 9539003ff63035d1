"""One HTTP/1.1 connection and the response it is reading, for `http_client`.

`Connection` is an asyncio `Protocol` feeding httptools' parser; `Response`
hands its body to one reader, pauses the socket while that reader lags, and
waits on the upstream only within the exchange's `Limits`. The errors an
exchange can end with:

    HttpError
    ├── ConnectFailed       no connection (refused, unreachable, TLS handshake, proxy)
    ├── ConnectTimeout      no connection within the connect limit
    ├── ReadTimeout         the upstream was silent for the read limit
    ├── TotalTimeout        the exchange outlived the total limit
    ├── Disconnected        the connection ended before a response began
    │   └── IncompleteBody  ... or before its body was whole
    └── ProtocolError       the bytes are not an HTTP/1.1 response
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Protocol, cast

import httptools

# Body bytes buffered before the socket stops being read (a slow consumer of a fast stream),
# and the level at which reading resumes.
HIGH_WATER = 1 << 20
LOW_WATER = 1 << 18


class HttpError(Exception):
    """Any failure of an exchange; the message names no host, key or path."""


class ConnectFailed(HttpError):
    pass


class ConnectTimeout(HttpError):
    pass


class ReadTimeout(HttpError):
    pass


class TotalTimeout(HttpError):
    pass


class Disconnected(HttpError):
    pass


class IncompleteBody(Disconnected):
    pass


class ProtocolError(HttpError):
    pass


@dataclass(frozen=True, slots=True)
class Limits:
    """Seconds: to connect, of silence while waiting for the upstream, for the whole exchange."""

    connect: float
    read: float
    total: float


class Pool(Protocol):
    """Where a connection goes back once its exchange is done."""

    def returned(self, conn: Connection, keep: bool) -> None:
        """`conn`'s exchange ended; `keep`: it can carry another."""
        ...


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection carrying one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._response: Response | None = None
        self._lost = False
        self._interim = False  # parsing a 1xx response, which a final one follows
        self.idle_since = 0.0

    def usable(self) -> bool:
        return not self._lost and self._transport is not None and not self._transport.is_closing()

    async def exchange(self, data: bytes, limits: Limits, deadline: float) -> Response:
        assert self._transport is not None
        response = self._response = Response(self, limits, deadline)
        self._transport.write(data)
        try:
            await response.start()
        except BaseException:
            response.close()
            raise
        return response

    def finished(self, response: Response) -> None:
        """`response` is done with: keep the connection if it can carry another."""
        self._response = None
        self._pool.returned(self, response.reusable())

    def close(self) -> None:
        self._lost = True
        if self._transport is not None:
            self._transport.close()

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self._response is None:  # bytes on an idle connection: nothing may be trusted now
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._response.fail(ProtocolError("an upgrade instead of a response"))
            self.close()
        except httptools.HttpParserError:
            self._response.fail(ProtocolError("a malformed response"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._response is not None:
            self._response.lost(clean=exc is None)

    def pause(self) -> None:
        if self._transport is not None and not self._lost:
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._transport is not None and not self._lost:
            self._transport.resume_reading()

    # --- httptools callbacks ---

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._response is not None:
            self._response.header(name, value)

    def on_headers_complete(self) -> None:
        if self._response is not None:
            status = self._parser.get_status_code()
            if 100 <= status < 200:  # interim (100 Continue, 103 Early Hints): skipped
                self._interim = True
                self._response.headers.clear()
                return
            self._response.began(status, self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response.feed(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        elif self._response is not None:
            self._response.complete()


class Response:
    """A response whose head has arrived; its body is read with `read` and it ends with
    `close`, which keeps the connection for the next request only if the body was read
    to its end (a response abandoned early closes its connection at once)."""

    def __init__(self, conn: Connection, limits: Limits, deadline: float) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._conn: Connection | None = conn
        self._limits = limits
        self._deadline = deadline
        self._loop = asyncio.get_running_loop()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._keep_alive = False
        self._framed = False  # a length or chunking says where the body ends
        self._done = False
        self._error: HttpError | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def start(self) -> None:
        while not self.status:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def read(self) -> bytes:
        """The next piece of the body; b"" once it has all been read."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            await self._wait()
        if self._loop.time() > self._deadline:  # a slow reader of a fast upstream never waits
            raise TotalTimeout("the exchange outlived the total limit")
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < LOW_WATER and self._conn is not None:
            self._paused = False
            self._conn.resume()
        return chunk

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.finished(self)

    def reusable(self) -> bool:
        return self._done and self._keep_alive and self._error is None and not self._chunks

    # --- fed by the connection ---

    def header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def began(self, status: int, keep_alive: bool) -> None:
        self.status = status
        self._keep_alive = keep_alive
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._framed = chunked or "content-length" in self.headers
        self._wake()

    def feed(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.pause()
        self._wake()

    def complete(self) -> None:
        self._done = True
        self._wake()

    def fail(self, error: HttpError) -> None:
        if not self._done and self._error is None:
            self._error = error
        self._wake()

    def lost(self, clean: bool) -> None:
        if self.status and not self._framed and clean:
            self.complete()  # the body ran to the end of the connection, as it said it would
        elif not self.status:
            self.fail(Disconnected("the connection closed before a response"))
        else:
            self.fail(IncompleteBody("the connection closed mid-body"))

    # --- waiting on the upstream, within the limits ---

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        remaining = self._deadline - self._loop.time()
        if remaining <= 0:
            raise TotalTimeout("the exchange outlived the total limit")
        waiter = self._waiter = self._loop.create_future()
        if self._limits.read < remaining:
            timer = self._loop.call_later(self._limits.read, _expire, waiter, ReadTimeout)
        else:
            timer = self._loop.call_later(remaining, _expire, waiter, TotalTimeout)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _expire(waiter: asyncio.Future[None], error: type[HttpError]) -> None:
    if not waiter.done():
        waiter.set_exception(error("the upstream kept silent past a limit"))
