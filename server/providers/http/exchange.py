"""What the HTTP providers share: their pooled session and the one exchange.

Each provider holds one `aiohttp.ClientSession` (`session`: its pool,
limits, TLS and proxy). `HttpProvider._events` POSTs a request and yields the
upstream's Server-Sent Events; `_fetch` reads a whole JSON answer instead.
They are the only place where aiohttp's errors become `server.errors`, and
they hand HTTP statuses to `errors`:

    the request not written in full        UpstreamUnavailable 503 (may be re-sent)
      (refused, no connection in time, reset while sending)
    the connection lost after that         ProviderError   503
    our silence and total limits           UpstreamTimeout 504
    protocol violations, a broken body     BadUpstream     502
    any other HTTP status                  see errors

`total_timeout` counts from the request's start: the wait for a pooled
connection, the head, and the body, even while our own caller is not reading
(the response is closed at the deadline, so a stalled consumer cannot hold an
upstream connection). Retrying and fallback belong to the router; this
module only raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import math
import ssl
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any

import aiohttp
import orjson
import yarl
from multidict import CIMultiDict, CIMultiDictProxy

from server.errors import (
    BadUpstream,
    InvalidRequest,
    ProviderError,
    TokenwireError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from server.observability import tracing
from server.providers.base import ModelCard
from server.providers.http.config import UpstreamConfig
from server.providers.http.errors import (
    bad_chunk,
    decode_json,
    error_for_status,
    error_from_payload,
)
from server.providers.http.session import session_for, timeout
from server.providers.http.sse import SSEDecoder, SSEError, SSEEvent

MAX_ERROR_BODY = 64 * 1024  # an error page is read this far, no further
MAX_BODY = 16 * 2**20  # a whole (non-streamed) answer is refused beyond this
# After its end marker a stream's body ends at once; reading that end puts the connection
# back in its pool. An upstream that does not end it is cut off after this long.
DRAIN_SECONDS = 0.25

Headers = CIMultiDictProxy[str]


class HttpProvider:
    """What every HTTP upstream provider shares: its config, its pooled session, its models.

    A session handed in stays the caller's; one made here (on first use, inside
    the running loop, as aiohttp wants; over `tls` for https if given) is closed
    by `aclose`.
    """

    default_supported: frozenset[str] = frozenset()  # when the config names none
    path: str  # where every request goes, below the base URL

    def __init__(
        self,
        config: UpstreamConfig,
        session: aiohttp.ClientSession | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._config = config
        self._owns_session = session is None
        self._session = session
        self._tls = tls
        self._closed = False
        # Worked out once: every request of this provider goes to the same place, as limited,
        # with the same headers.
        self._url = yarl.URL(config.base_url + self.path)
        self._timeout = timeout(config)
        self._stream_headers = _headers(_JSON_SSE, self.auth_headers(), config.headers)
        self._whole_headers = _headers(_JSON, self.auth_headers(), config.headers)

    def auth_headers(self) -> dict[str, str]:
        """What the upstream wants on every request besides the configured headers."""
        return {}

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def supported(self) -> frozenset[str]:
        configured = self._config.supported
        return configured if configured is not None else self.default_supported

    def models(self) -> tuple[ModelCard, ...]:
        return self._config.models

    async def aclose(self) -> None:
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()

    async def _events(self, body: Mapping[str, Any]) -> AsyncGenerator[SSEEvent, None]:
        """The event stream answering `body`.

        A stream read to its end leaves its connection in the pool; one abandoned
        early (the caller went away) closes the upstream connection at once. Every
        failure leaves as a `server.errors` type.
        """
        exchange = _Exchange(self._config)
        with _translated(exchange):
            try:
                response = await self._post(self._stream_headers, body, exchange)
                await _check_response(self._config, response)
                decoder = SSEDecoder()
                while chunk := await response.content.readany():
                    exchange.got_first_byte = True
                    for event in decoder.feed(chunk):
                        yield event
                for event in decoder.close():
                    yield event
            finally:
                exchange.finished()

    async def _fetch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON object answering `body`, read whole; errors and cancellation as in
        `_events`."""
        config, exchange = self._config, _Exchange(self._config)
        with _translated(exchange):
            try:
                response = await self._post(self._whole_headers, body, exchange)
                await _raise_for_status(config, response)
                answer = await _read_whole(config, response)
            finally:
                exchange.finished()
        return decode_json(config, answer, "an answer")

    async def _post(
        self, headers: Headers, body: Mapping[str, Any], exchange: _Exchange
    ) -> aiohttp.ClientResponse:
        """POST `body` as JSON to this provider's endpoint; return once the response's head
        has arrived (`exchange` then holds it, to close it at the deadline)."""
        response = await self._pooled().post(
            self._url,
            data=encode_json(body),
            headers=tracing.propagated(headers),  # the same headers unless tracing is on
            timeout=self._timeout,
            allow_redirects=False,
            upload_tracker=exchange.upload,
        )
        exchange.response = response
        if response.headers.get("content-encoding", "identity").lower() != "identity":
            raise bad_chunk(self._config, "a compressed response, though asked for none")
        return response

    def _pooled(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError(f"provider {self.name} is closed")
        if self._session is None:
            self._session = session_for(self._config, self._tls)
        return self._session


def _headers(*layers: Mapping[str, str]) -> Headers:
    """One value per name, whatever its case: later layers win."""
    merged: CIMultiDict[str] = CIMultiDict()
    for layer in layers:
        for name, value in layer.items():
            merged[name] = value
    return CIMultiDictProxy(merged)


def encode_json(body: Mapping[str, Any]) -> bytes:
    """`body` as compact JSON, key order kept."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:  # integers beyond 64 bits, which a tool schema may hold
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def load_json_text(text: str, param: str) -> Any:
    """Parse JSON text a caller gave (a tool schema), keeping key order and integers.

    Non-finite numbers (`1e999`) are refused here: they could not be sent on.
    """
    try:
        return json.loads(text, parse_float=_finite_float)
    except ValueError:
        raise InvalidRequest(f"{param} is not valid JSON", param=param) from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"non-finite number {text}")
    return value


# --- the stream ----------------------------------------------------------------------------


class _Exchange:
    """One request's progress: its deadline, whether its body went out whole, how far the
    answer got; enough to name what ended it, and to end it at the deadline."""

    def __init__(self, config: UpstreamConfig) -> None:
        loop = asyncio.get_running_loop()
        self.config = config
        self.upload = aiohttp.UploadTracker()
        self.response: aiohttp.ClientResponse | None = None
        self.got_first_byte = False
        self.expired = False
        # aiohttp's total limit ends every wait on the upstream; this one closes a response
        # nobody is reading. Started first, it has always fired by the time aiohttp's has.
        when = loop.time() + config.total_timeout
        self._deadline = loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self.response is not None:
            self.response.close()  # its connection goes, and a later read fails at once

    def finished(self) -> None:
        """Done: the response's connection is kept only if its body was read whole."""
        self._deadline.cancel()
        if self.response is not None:
            self.response.close()

    def unsent(self) -> bool:
        """Whether the request never went out whole: then the upstream cannot have acted."""
        upload = self.upload.upload_complete
        return not upload.done() or upload.exception() is not None

    def silence(self) -> UpstreamTimeout:
        cfg, limit = self.config, f"{self.config.first_byte_timeout:g} s"
        if self.got_first_byte:
            message = f"{cfg.name} went silent mid-stream for {limit}"
        else:
            message = f"{cfg.name} sent nothing within {limit}"
        return UpstreamTimeout(message, metadata={"provider": cfg.name})

    def overall(self) -> UpstreamTimeout:
        cfg = self.config
        message = f"{cfg.name} did not finish within {cfg.total_timeout:g} s"
        return UpstreamTimeout(message, metadata={"provider": cfg.name})


# Some API fronts turn away requests that name no client; a configured header may replace it.
# Bodies are read as sent, so none may come compressed (small JSON and token streams gain
# little from it on a kept-alive connection).
_AGENT = {
    "user-agent": f"tokenwire/{importlib.metadata.version('tokenwire')}",
    "accept-encoding": "identity",
}
_JSON_SSE = {**_AGENT, "accept": "text/event-stream", "content-type": "application/json"}
_JSON = {**_AGENT, "accept": "application/json", "content-type": "application/json"}


async def drain(events: AsyncGenerator[SSEEvent, None]) -> None:
    """After a stream's end marker, read to the end of the body (bounded, ignoring what comes)
    so the connection is reused rather than closed. Never for an abandoned stream: that one
    is closed at once."""
    with contextlib.suppress(TimeoutError, TokenwireError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in events:
                pass


@contextlib.contextmanager
def _translated(exchange: _Exchange) -> Iterator[None]:
    """Foreign errors in, typed errors out; messages name no host, key or path."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _typed(exc, exchange) from exc
    except SSEError as exc:
        raise bad_chunk(exchange.config, "an event stream beyond our size limit") from exc


def _typed(exc: Exception, exchange: _Exchange) -> TokenwireError:
    """The error for what broke an exchange, the limits that ended it first."""
    name = exchange.config.name
    meta = {"provider": name, "cause": type(exc).__name__}
    if exchange.expired:  # whatever broke, it broke because the total limit was reached
        return exchange.overall()
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return exchange.silence()
    if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ConnectionTimeoutError):
        return exchange.overall()  # aiohttp's total limit, in the same instant as ours
    if exchange.unsent():
        return UpstreamUnavailable(_unsent(exc, exchange.config), metadata=meta)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return BadUpstream(f"{name} broke off its response", metadata=meta)
    if isinstance(exc, aiohttp.ClientResponseError):
        return BadUpstream(f"{name} garbled its response", metadata=meta)
    return ProviderError(f"lost the connection to {name}", metadata=meta)


def _unsent(exc: Exception, config: UpstreamConfig) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"{config.name} did not accept a connection within {config.connect_timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientHttpProxyError):
        return f"cannot connect to {config.name}"
    return f"lost the connection to {config.name} before the request was sent"


async def _check_response(config: UpstreamConfig, response: aiohttp.ClientResponse) -> None:
    """Raise the typed error unless the upstream answered 2xx with a stream."""
    await _raise_for_status(config, response)
    if response.headers.get("content-type", "").lower().startswith("application/json"):
        # Some servers answer a failed stream with a 200 JSON error object.
        raise _json_instead_of_stream(config, await _read_limited(response))


async def _raise_for_status(config: UpstreamConfig, response: aiohttp.ClientResponse) -> None:
    """The typed error for any answer but 2xx, from its (bounded) body and headers."""
    if not 200 <= response.status < 300:
        body = await _read_limited(response)
        raise error_for_status(config, response.status, body, response.headers)


def _json_instead_of_stream(config: UpstreamConfig, body: bytes) -> TokenwireError:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "error" in payload:
        return error_from_payload(config, payload)
    text = body.decode("utf-8", "replace")
    return bad_chunk(config, "a JSON document instead of an event stream", text)


async def _read_whole(config: UpstreamConfig, response: aiohttp.ClientResponse) -> bytes:
    if (response.content_length or 0) > MAX_BODY:
        raise bad_chunk(config, f"an answer larger than {MAX_BODY // 2**20} MiB")
    chunks, size = [], 0
    while chunk := await response.content.readany():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            raise bad_chunk(config, f"an answer larger than {MAX_BODY // 2**20} MiB")
    return b"".join(chunks)


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    while len(body) < MAX_ERROR_BODY and (chunk := await response.content.readany()):
        body += chunk
    return bytes(body[:MAX_ERROR_BODY])
