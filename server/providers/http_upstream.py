"""What the HTTP providers share: their pooled client and the one exchange.

Each provider holds one `HttpClient` (`http_client`: keep-alive pools on
httptools' parser, a fifth of aiohttp's CPU per request; see
bench/upstream.py). `HttpProvider._events` POSTs a request and yields the
upstream's Server-Sent Events; `_fetch` reads a whole JSON answer instead.
They are the only place where the client's errors become `server.errors`, and
they hand HTTP statuses to `upstream_errors`:

    connect / read / write failures        ProviderError   503
    our connect, silence, total limits     UpstreamTimeout 504
    protocol violations                    BadUpstream     502
    any other HTTP status                  see upstream_errors

Retrying and fallback belong to the router; this module only raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import math
import urllib.request
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from server.errors import (
    BadUpstream,
    InvalidRequest,
    ProviderError,
    TokenwireError,
    UpstreamTimeout,
)
from server.providers import http_connection
from server.providers.base import GenerationRequest, Message, ModelCard, Usage
from server.providers.http_client import HttpClient, Prepared
from server.providers.http_connection import Response
from server.providers.sse import SSEDecoder, SSEError, SSEEvent
from server.providers.upstream_config import UpstreamConfig
from server.providers.upstream_errors import (
    bad_chunk,
    decode_json,
    error_for_status,
    error_from_payload,
)

MAX_ERROR_BODY = 64 * 1024  # an error page is read this far, no further
MAX_BODY = 16 * 2**20  # a whole (non-streamed) answer is refused beyond this
# After its end marker a stream's body ends at once; reading that end puts the connection
# back in its pool. An upstream that does not end it is cut off after this long.
DRAIN_SECONDS = 0.25
# Estimated usage counts ~4 characters a token: a rough rule for English text
# with BPE tokenizers, used only when an upstream reports no usage.
CHARS_PER_TOKEN = 4


class HttpProvider:
    """What every HTTP upstream provider shares: its config, its pooled client, its models.

    A client handed in stays the caller's; one made here is closed by `aclose`.
    """

    default_supported: frozenset[str] = frozenset()  # when the config names none
    path: str  # where every request goes, below the base URL

    def __init__(self, config: UpstreamConfig, client: HttpClient | None = None) -> None:
        self._config = config
        self._owns_client = client is None
        self._client = client or new_client(config)
        self._closed = False
        # Worked out once: every request of this provider goes to the same place, as limited,
        # with the same headers.
        url = config.base_url + self.path
        own = {**self.auth_headers(), **config.headers}
        self._stream_request = self._client.prepare(url, {**_JSON_SSE, **own})
        self._whole_request = self._client.prepare(url, {**_JSON, **own})
        self._limits = config.limits()

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
        if self._owns_client:
            await self._client.aclose()

    async def _events(self, body: Mapping[str, Any]) -> AsyncGenerator[SSEEvent, None]:
        """The event stream answering `body`.

        A stream read to its end leaves its connection in the pool; one abandoned
        early (the caller went away) closes the upstream connection at once. Every
        failure leaves as a `server.errors` type.
        """
        progress = _Progress(self._config)
        with _translated(self._config, progress):
            response = await self._post(self._stream_request, body)
            try:
                await _check_response(self._config, response)
                decoder = SSEDecoder()
                while chunk := await response.read():
                    progress.got_first_byte = True
                    for event in decoder.feed(chunk):
                        yield event
                for event in decoder.close():
                    yield event
            finally:
                # Closed, not drained: the connection is kept only if the body was read whole.
                response.close()

    async def _fetch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON object answering `body`, read whole; errors and cancellation as in
        `_events`."""
        config = self._config
        with _translated(config, _Progress(config)):
            response = await self._post(self._whole_request, body)
            try:
                await _raise_for_status(config, response)
                answer = await _read_whole(config, response)
            finally:
                response.close()
        return decode_json(config, answer, "an answer")

    async def _post(self, request: Prepared, body: Mapping[str, Any]) -> Response:
        """POST `body` as JSON to this provider's endpoint."""
        if self._closed:
            raise RuntimeError(f"provider {self.name} is closed")
        response = await self._client.post(request, encode_json(body), self._limits)
        if response.headers.get("content-encoding", "identity").lower() != "identity":
            response.close()
            raise bad_chunk(self._config, "a compressed response, though asked for none")
        return response


def new_client(config: UpstreamConfig) -> HttpClient:
    """A client for a provider that was not handed one (the provider then owns it)."""
    # The proxy is read from the environment once, here, not per request.
    proxy = env_proxy(config.base_url)
    return HttpClient(proxy=proxy)


def env_proxy(url: str) -> str | None:
    """The proxy HTTP_PROXY / HTTPS_PROXY name for `url`, unless NO_PROXY exempts its host."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


def encode_json(body: Mapping[str, Any]) -> bytes:
    """`body` as compact JSON, key order kept."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:  # integers beyond 64 bits, which a tool schema may hold
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def estimated_usage(request: GenerationRequest, generated_chars: int) -> Usage:
    """A `Usage` counted here, roughly, for an upstream that reported none."""
    prompt = sum(len(_message_text(m)) for m in request.messages)
    prompt += sum(len(f"{t.name}{t.description or ''}{t.parameters or ''}") for t in request.tools)
    return Usage(
        prompt_tokens=math.ceil(prompt / CHARS_PER_TOKEN),
        completion_tokens=math.ceil(generated_chars / CHARS_PER_TOKEN),
        estimated=True,
    )


def _message_text(message: Message) -> str:
    calls = "".join(c.name + c.arguments for c in message.tool_calls)
    return message.text() + calls


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


class _Progress:
    """How far an exchange got, to name the limit that ended it."""

    def __init__(self, config: UpstreamConfig) -> None:
        self._config = config
        self.got_first_byte = False

    def silence(self) -> UpstreamTimeout:
        cfg, limit = self._config, f"{self._config.first_byte_timeout:g} s"
        if self.got_first_byte:
            message = f"{cfg.name} went silent mid-stream for {limit}"
        else:
            message = f"{cfg.name} sent nothing within {limit}"
        return UpstreamTimeout(message, metadata={"provider": cfg.name})

    def overall(self) -> UpstreamTimeout:
        cfg = self._config
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
def _translated(config: UpstreamConfig, progress: _Progress) -> Iterator[None]:
    """Foreign errors in, typed errors out; messages name no host, key or path."""
    meta = {"provider": config.name}
    try:
        yield
    except http_connection.ConnectTimeout as exc:
        message = f"{config.name} did not accept a connection within {config.connect_timeout:g} s"
        raise UpstreamTimeout(message, metadata=_cause(meta, exc)) from exc
    except http_connection.ReadTimeout as exc:
        raise progress.silence() from exc
    except http_connection.TotalTimeout as exc:
        raise progress.overall() from exc
    except http_connection.ConnectFailed as exc:
        raise ProviderError(f"cannot connect to {config.name}", metadata=_cause(meta, exc)) from exc
    except http_connection.Disconnected as exc:
        message = f"{config.name} broke off its response"
        raise BadUpstream(message, metadata=_cause(meta, exc)) from exc
    except http_connection.ProtocolError as exc:
        message = f"{config.name} garbled its response"
        raise BadUpstream(message, metadata=_cause(meta, exc)) from exc
    except OSError as exc:  # writing to a connection that broke
        message = f"lost the connection to {config.name}"
        raise ProviderError(message, metadata=_cause(meta, exc)) from exc
    except SSEError as exc:
        raise bad_chunk(config, "an event stream beyond our size limit") from exc


def _cause(meta: dict[str, str], exc: BaseException) -> dict[str, str]:
    return {**meta, "cause": type(exc).__name__}


async def _check_response(config: UpstreamConfig, response: Response) -> None:
    """Raise the typed error unless the upstream answered 2xx with a stream."""
    await _raise_for_status(config, response)
    if response.headers.get("content-type", "").lower().startswith("application/json"):
        # Some servers answer a failed stream with a 200 JSON error object.
        raise _json_instead_of_stream(config, await _read_limited(response))


async def _raise_for_status(config: UpstreamConfig, response: Response) -> None:
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


async def _read_whole(config: UpstreamConfig, response: Response) -> bytes:
    chunks, size = [], 0
    while chunk := await response.read():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            raise bad_chunk(config, f"an answer larger than {MAX_BODY // 2**20} MiB")
    return b"".join(chunks)


async def _read_limited(response: Response) -> bytes:
    body = bytearray()
    while len(body) < MAX_ERROR_BODY and (chunk := await response.read()):
        body += chunk
    return bytes(body[:MAX_ERROR_BODY])
