"""Small ASGI helpers: read a bounded body, send JSON, carry headers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from gateway.errors import GatewayError

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

JSON_TYPE = (b"content-type", b"application/json")


def header_map(scope: Scope, names: frozenset[bytes]) -> dict[str, str]:
    """The request headers named in `names` (lower-case), by name; the last one wins.

    Only those: decoding every header a client sends costs more than the lookups.
    """
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in names}


async def read_body(scope: Scope, receive: Receive, limit: int, timeout: float) -> bytes:
    """The whole request body, refusing more than `limit` bytes (413) and a body still
    arriving `timeout` seconds after its first part (408: a slow-body slowloris).

    Most bodies come with their head, in the first message: those pay no timer.
    """
    declared = _content_length(scope)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    body = _Body(limit)
    if body.take(await receive()):
        return body.whole()
    try:
        async with asyncio.timeout(timeout):
            while not body.take(await receive()):
                pass
    except TimeoutError:
        message = f"The request body was not received within {timeout:g} seconds."
        close = {"Connection": "close"}  # what is still coming of it is no request
        raise GatewayError(408, message, code="request_timeout", headers=close) from None
    return body.whole()


class _Body:
    """A request body as it arrives, bounded."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0

    def take(self, message: ASGIMessage) -> bool:
        """Add one ASGI message's part; True when the body is complete."""
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected while sending the body")
        chunk = message.get("body", b"")
        self._size += len(chunk)
        if self._size > self._limit:
            raise _too_large(self._limit)
        self._chunks.append(chunk)
        return not message.get("more_body", False)

    def whole(self) -> bytes:
        return b"".join(self._chunks)


async def wait_disconnect(receive: Receive) -> None:
    """Until the client disconnects (every request message before that is passed over)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _content_length(scope: Scope) -> int | None:
    for k, v in scope["headers"]:
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                raise GatewayError(400, "Invalid Content-Length header.") from None
    return None


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"Request body is larger than the limit of {limit} bytes.")


async def send_json(send: Send, status: int, value: Any, headers: RawHeaders) -> None:
    await send_bytes(send, status, orjson.dumps(value), [JSON_TYPE, *headers])


async def send_bytes(send: Send, status: int, body: bytes, headers: RawHeaders) -> None:
    """A whole response; `headers` name its content type."""
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [length, *headers]})
    await send({"type": "http.response.body", "body": body})


def encode_headers(headers: dict[str, str]) -> RawHeaders:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
