"""uvicorn's httptools protocol with limits on the request head, and JSON refusals.

uvicorn (0.54) bounds nothing before a request reaches the app: a client may
keep a connection open by sending its head a byte at a time (slowloris), or
send a 64 MiB header, which httptools buffers whole before calling back. Its
own refusal of a malformed request is a plain-text 400. This subclass changes
only that; parsing stays httptools':

- the head has a deadline, armed when the connection opens or a read leaves a
  head unfinished, and cancelled when the head is complete: a partial head
  past it gets 408, a connection that sent nothing is closed;
- the head's size (request line and headers) and its number of headers are
  bounded: 431. While a head is unfinished, the bytes that arrived since it
  began are counted, so a huge header is refused at most one socket read past
  the limit; a head that came whole is measured once complete;
- every refusal is OpenAI-shaped JSON and ends the connection: the write side
  closes at once, and what the client still sends is read and dropped for a
  moment (`LINGER`) so that closing with unread bytes does not reset the
  connection and lose the answer before the client reads it.

The usual request, whose head arrives in one read, costs a few comparisons:
no timer, no per-header callback. Its answer leaves in one write where uvicorn
makes two (`_JoinedHead`): a socket write costs more than the Python around it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.errors import GatewayError

LINGER = 2.0  # seconds a refused client's further bytes are read and dropped


@dataclass(frozen=True, slots=True)
class HeadLimits:
    # Seconds a client has to send a request's whole head.
    timeout: float = 10.0
    # Largest head in bytes: the request line and every header line.
    max_bytes: int = 64 * 1024
    # Most header lines in one request.
    max_headers: int = 100


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; the refusal is kept on the protocol."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with `limits` on each request head (see the module docstring)."""

    limits: ClassVar[HeadLimits] = HeadLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The head's deadline, or after a refusal the end of lingering.
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._in_head = True  # the next bytes belong to a request head
        self._received = 0  # bytes received since that head began, parsed or not
        self._refusal: GatewayError | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and dropped
        if self._in_head:
            self._received += len(data)
        super().data_received(data)
        if not (self._in_head and self._received) or self.transport.is_closing():
            return  # the usual case: each head arrives whole, in one read
        if self._received > self.limits.max_bytes:
            self._refuse(self._head_too_large())
        elif self._timer is None:
            self._arm_head_timer()  # a head left unfinished: it has until the deadline

    def on_headers_complete(self) -> None:
        self._cancel_timer()
        self._check_head()
        self._in_head, self._received = False, 0
        super().on_headers_complete()
        if self.cycle is not None:  # None for an upgrade request
            joined = _JoinedHead(self.transport, self.loop, self._linger)
            self.cycle.transport = joined  # type: ignore[assignment]

    def _check_head(self) -> None:
        # A head that came in one read can be larger than the limit by up to that read.
        if len(self.headers) > self.limits.max_headers:
            self._stop(_too_large(f"A request may have at most {self.limits.max_headers} headers."))
        if self._received > self.limits.max_bytes and self._head_size() > self.limits.max_bytes:
            self._stop(self._head_too_large())

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """httptools refused the bytes, or a callback stopped it: answer in JSON."""
        refusal, self._refusal = self._refusal, None
        self._refuse(refusal or GatewayError(400, msg, code="invalid_http_request"))

    def _head_size(self) -> int:
        return len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)  # ": ", CRLF

    def _stop(self, refusal: GatewayError) -> NoReturn:
        """Stop the parser from a callback: `send_400_response` then answers `refusal`."""
        self._refusal = refusal
        raise _Refused

    def _head_too_large(self) -> GatewayError:
        return _too_large(
            f"Request headers are larger than the limit of {self.limits.max_bytes} bytes."
        )

    def _arm_head_timer(self) -> None:
        self._timer = self.loop.call_later(self.limits.timeout, self._head_timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined head stalls: close after this response
        elif self._received:
            message = f"The request head was not received within {self.limits.timeout:g} seconds."
            self._refuse(GatewayError(408, message, code="request_timeout"))
        else:
            self.transport.close()  # nothing sent: nobody to answer

    def _refuse(self, error: GatewayError) -> None:
        """Answer `error` as JSON and end the connection (see `LINGER`)."""
        if self.transport.is_closing() or self._refused:
            return
        self._refused = True
        self._cancel_timer()
        body = orjson.dumps(error.body())
        head = [
            STATUS_LINE[error.status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join([*head, body]))
        self._linger()

    def _linger(self) -> None:
        """End the connection after an answer without losing it: the write side closes at
        once; what the client still sends is dropped until its EOF or `LINGER` seconds."""
        self._refused = True
        self._cancel_timer()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the client's EOF then closes it (`eof_received`)
        self._timer = self.loop.call_later(LINGER, self.transport.close)


class _JoinedHead:
    """A response's transport that sends its head with the first body write, not alone,
    and a streamed (chunked) response's writes of one event-loop turn as one.

    uvicorn writes a response's status line and headers, then each body part, one
    socket write each: a small JSON answer costs two writes and two packets. The
    head (the first write) is held until the next write joins it, or until the
    end of this turn of the event loop, so a stream's head never waits on its
    first event. A chunked response (an event stream) holds every write until the
    end of the turn: the events of one upstream read, which a loaded server gets
    several at a time, leave in one socket write (a write costs more than the
    Python of an event). Everything else goes to the connection's transport.
    """

    __slots__ = ("_chunked", "_held", "_linger", "_loop", "_started", "_transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        linger: Callable[[], None] | None = None,
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._linger = linger  # how the connection ends after a `connection: close` answer
        self._held: list[bytes] | None = None
        # Which write comes: a flag, not a bound method kept on self, which would make a
        # reference cycle per response for the (rarely run) cyclic GC to free.
        self._started = self._chunked = False

    def write(self, data: bytes) -> None:
        if self._chunked:  # an event stream: this turn's writes leave together
            if self._held is None:
                self._held = [data]
                self._loop.call_soon(self._flush)
            else:
                self._held.append(data)
        elif self._started:
            self._join(data)
        else:
            self._hold(data)

    def _hold(self, data: bytes) -> None:
        self._held = [data]
        self._started, self._chunked = True, _CHUNKED in data
        self._loop.call_soon(self._flush)

    def _join(self, data: bytes) -> None:
        held, self._held = self._held, None
        self._transport.write(held[0] + data if held is not None else data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        """uvicorn ends a `connection: close` answer (a 408 mid-body, say) here. Closed at
        once, a socket with unread bytes from a client still sending resets the connection,
        and the client may lose the answer before reading it: linger instead."""
        self._flush()
        if self._linger is None or self._transport.is_closing():
            self._transport.close()
        else:
            self._linger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


_CHUNKED = b"\r\ntransfer-encoding: chunked\r\n"  # as uvicorn writes it in a head


def _too_large(message: str) -> GatewayError:
    return GatewayError(431, message, code="request_header_fields_too_large")


def limited_protocol(limits: HeadLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn builds per connection, carrying `limits`."""

    class Configured(LimitedHttpToolsProtocol):
        pass

    Configured.limits = limits
    return Configured
