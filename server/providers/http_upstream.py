"""What the HTTP providers share: their config and the one error translation.

`UpstreamConfig` is built once at the edge (the API key already resolved from
its environment variable) and passed in. Each provider holds one pooled
`aiohttp.ClientSession` (aiohttp rather than httpx: its C parser and lean pool
cost a tenth of httpx's CPU per request here, see bench/upstream.py).
`stream_events` POSTs a request and yields the upstream's Server-Sent Events;
it is the only place where aiohttp exceptions and upstream HTTP statuses become
`server.errors`:

    connect / read / write failures        ProviderError   503
    our connect, silence, total limits     UpstreamTimeout 504
    HTTP 429                               RateLimited     429 (Retry-After)
    HTTP 408, 504                          UpstreamTimeout 504
    HTTP 401, 402, 403 (our credentials)   ProviderError   503
    HTTP 422                               Unprocessable   422
    other HTTP 4xx                         InvalidRequest  400
    HTTP 5xx                               ProviderError   503
    protocol violations, garbage chunks    BadUpstream     502

The upstream's own message travels in `metadata["upstream_message"]`, with the
API key cut out of it: some upstreams echo the key they were given. Retrying
and fallback belong to the router; this module only raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import time
import urllib.request
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import yarl

from server.errors import (
    BadUpstream,
    InvalidRequest,
    ProviderError,
    RateLimited,
    TokenwireError,
    Unprocessable,
    UpstreamTimeout,
)
from server.providers.base import GenerationRequest, Message, ModelCard, Usage
from server.providers.sse import SSEDecoder, SSEError, SSEEvent

DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 does not say
MAX_ERROR_BODY = 64 * 1024  # an error page is read this far, no further
# Keep as many idle connections as may be busy at once: a small pool keeps closing and
# reopening connections under concurrent load.
POOL_SIZE = 512
# Idle connections are dropped before common servers drop them (uvicorn, Node: 5 s), so a
# request never races a server closing the connection it was handed.
KEEPALIVE_SECONDS = 4.0
# After its end marker a stream's body ends at once; reading that end lets aiohttp put the
# connection back in its pool. An upstream that does not end it is cut off after this long.
DRAIN_SECONDS = 0.25
MAX_UPSTREAM_MESSAGE = 1000  # characters of the upstream's message we pass on
REDACTED = "[redacted]"
# Estimated usage counts ~4 characters a token: a rough rule for English text
# with BPE tokenizers, used only when an upstream reports no usage.
CHARS_PER_TOKEN = 4

# Error kinds upstreams name in bodies and stream events, as the status they mean.
_KIND_STATUS = {
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "authentication_error": 401,
    "insufficient_quota": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "api_error": 500,
    "server_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One HTTP upstream, built once from configuration and passed in.

    `api_key` is the resolved secret (never the variable's name); it is kept
    out of `repr` and out of every error. `supported` of None means the
    provider's own default parameter set. Timeouts are in seconds:
    `first_byte_timeout` bounds any silence of the upstream: the wait for its
    first byte (a slow prompt) and every pause after; `total_timeout` bounds
    the whole exchange.
    """

    name: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    models: tuple[ModelCard, ...] = ()
    supported: frozenset[str] | None = None
    connect_timeout: float = 5.0
    first_byte_timeout: float = 60.0
    total_timeout: float = 600.0
    # OpenAI-compatible only: o-series models want `max_completion_tokens`,
    # most compatible servers know only `max_tokens`.
    max_tokens_param: str = "max_tokens"
    # Anthropic only: the Messages API requires `max_tokens`.
    default_max_tokens: int = 4096

    def __post_init__(self) -> None:
        # The mapping is copied and frozen so a shared dict cannot change it later.
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        limits = (self.connect_timeout, self.first_byte_timeout, self.total_timeout)
        if min(limits) <= 0:
            raise ValueError(f"upstream {self.name}: timeouts must be positive")
        # A bad URL is a configuration mistake: refuse it at start-up, not per request.
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"upstream {self.name}: base_url must be an http(s) URL")

    def url(self, path: str) -> yarl.URL:
        """The absolute URL of `path` (which starts with `/`) on this upstream, parsed once."""
        return _parsed(self.base_url + path)

    def timeout(self) -> aiohttp.ClientTimeout:
        """The limits of one exchange, which aiohttp enforces at each wait for the upstream
        (never while our caller runs between events): silence is `first_byte_timeout`."""
        return _client_timeout(self.connect_timeout, self.first_byte_timeout, self.total_timeout)


class HttpProvider:
    """What every HTTP upstream provider shares: its config, its pooled session, its models.

    A session handed in stays the caller's; one made here (on first use, inside
    the running loop, as aiohttp wants) is closed by `aclose`.
    """

    default_supported: frozenset[str] = frozenset()  # when the config names none

    def __init__(
        self, config: UpstreamConfig, session: aiohttp.ClientSession | None = None
    ) -> None:
        self._config = config
        self._owns_session = session is None
        self._session = session
        self._closed = False

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

    def _events(
        self, path: str, headers: Mapping[str, str], body: Mapping[str, Any]
    ) -> AsyncGenerator[SSEEvent, None]:
        """The event stream answering `body` POSTed to `path` on this upstream."""
        return stream_events(self._pooled(), self._config, path, headers=headers, body=body)

    def _pooled(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError(f"provider {self.name} is closed")
        if self._session is None:
            self._session = new_session(self._config)
        return self._session


def new_session(config: UpstreamConfig) -> aiohttp.ClientSession:
    """A session for a provider that was not handed one (the provider then owns it)."""
    connector = aiohttp.TCPConnector(limit=POOL_SIZE, keepalive_timeout=KEEPALIVE_SECONDS)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=config.timeout(),
        # Cookies an upstream sets must not follow one caller's request into another's.
        cookie_jar=aiohttp.DummyCookieJar(),
        # Read once here: aiohttp's trust_env would also look for a .netrc on every request.
        proxy=env_proxy(config.base_url),
    )


def env_proxy(url: str) -> str | None:
    """The proxy HTTP_PROXY / HTTPS_PROXY name for `url`, unless NO_PROXY exempts its host."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


@functools.lru_cache(maxsize=256)
def _client_timeout(connect: float, silence: float, total: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total, sock_connect=connect, sock_read=silence)


@functools.lru_cache(maxsize=256)
def _parsed(url: str) -> yarl.URL:
    return yarl.URL(url)


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


def redact(config: UpstreamConfig, text: str) -> str:
    """`text` with the API key cut out."""
    return text.replace(config.api_key, REDACTED) if config.api_key else text


# --- errors --------------------------------------------------------------------------------


def error_for_status(
    config: UpstreamConfig,
    status: int,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> TokenwireError:
    """The typed error for an upstream answering `status` with `body`."""
    message = redact(config, _upstream_message(body)) or f"HTTP {status}"
    return _error_for(config, status, message, retry_after(headers or {}))


def error_from_payload(config: UpstreamConfig, payload: Mapping[str, Any]) -> TokenwireError:
    """The typed error for an error object sent inside a stream.

    Accepts `{"error": {"message", "type", "code"}}` (OpenAI, OpenRouter with a
    numeric `code`), Anthropic's `{"type": "error", "error": {"type", "message"}}`
    and `{"error": "text"}`.
    """
    err = payload.get("error", payload)
    if isinstance(err, str):
        return _error_for(config, 500, redact(config, err), DEFAULT_RETRY_AFTER)
    err = err if isinstance(err, Mapping) else {}
    kind, code = str(err.get("type") or ""), err.get("code")
    status = _status_of(code) or _KIND_STATUS.get(kind) or _KIND_STATUS.get(str(code)) or 500
    message = redact(config, str(err.get("message") or kind or "upstream error"))
    return _error_for(config, status, message[:MAX_UPSTREAM_MESSAGE], DEFAULT_RETRY_AFTER)


def retry_after(headers: Mapping[str, str], default: float = DEFAULT_RETRY_AFTER) -> float:
    """Seconds to wait from `Retry-After` (seconds or HTTP date) or `retry-after-ms`."""
    with contextlib.suppress(ValueError):
        if (millis := headers.get("retry-after-ms")) is not None:
            return _sane_delay(float(millis) / 1000, default)
    value = headers.get("retry-after")
    if value is None:
        return default
    with contextlib.suppress(ValueError):
        return _sane_delay(float(value), default)
    with contextlib.suppress(ValueError, TypeError):
        return _sane_delay(parsedate_to_datetime(value).timestamp() - time.time(), default)
    return default


def _sane_delay(seconds: float, default: float) -> float:
    return max(seconds, 0.0) if math.isfinite(seconds) else default


def _status_of(code: object) -> int | None:
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    if isinstance(code, str) and code.isdigit():
        return int(code)
    return None


def _error_for(config: UpstreamConfig, status: int, message: str, delay: float) -> TokenwireError:
    name = config.name
    meta = {"provider": name, "upstream_status": str(status), "upstream_message": message}
    if status == 429:
        return RateLimited(f"{name} is rate limiting requests", retry_after=delay, metadata=meta)
    if status in (408, 504):
        return UpstreamTimeout(f"{name} timed out (HTTP {status})", metadata=meta)
    if status in (401, 402, 403):
        # Our credentials or account, not the caller's: the caller cannot fix it.
        return ProviderError(f"{name} refused tokenwire's credentials", metadata=meta)
    if status == 422:
        return Unprocessable(f"{name} rejected the request: {message}", metadata=meta)
    if 400 <= status < 500:
        return InvalidRequest(f"{name} rejected the request: {message}", metadata=meta)
    if status >= 500:
        return ProviderError(f"{name} failed (HTTP {status})", metadata=meta)
    return BadUpstream(f"{name} answered with unexpected HTTP {status}", metadata=meta)


def _upstream_message(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        found = _message_in(json.loads(text))
    except ValueError:
        found = None
    return (found or text)[:MAX_UPSTREAM_MESSAGE]


def _message_in(payload: object) -> str | None:
    if not isinstance(payload, dict):
        return None
    for key in ("error", "message", "detail"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict) and (inner := _message_in(value)):
            return inner
    return None


def bad_chunk(config: UpstreamConfig, reason: str, data: str = "") -> BadUpstream:
    """The error for a stream the provider cannot make sense of."""
    meta = {"provider": config.name}
    if data:
        meta["chunk"] = redact(config, data[:200])
    return BadUpstream(f"{config.name} sent {reason}", metadata=meta)


def decode_json(config: UpstreamConfig, event: SSEEvent) -> dict[str, Any]:
    """The JSON object an event carries, or `BadUpstream`."""
    try:
        value = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        raise bad_chunk(config, "a chunk that is not valid JSON", event.data) from None
    if not isinstance(value, dict):
        raise bad_chunk(config, "a chunk that is not a JSON object", event.data)
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


async def stream_events(
    session: aiohttp.ClientSession,
    config: UpstreamConfig,
    path: str,
    *,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
) -> AsyncGenerator[SSEEvent, None]:
    """POST `body` as JSON to `path` and yield the event stream that answers.

    A stream read to its end leaves its connection in the pool; one abandoned
    early (the caller went away) closes the upstream connection at once. Every
    failure leaves as a `server.errors` type.
    """
    progress = _Progress(config)
    all_headers = {**_JSON_SSE, **headers, **config.headers}
    data, timeout = encode_json(body), config.timeout()
    with _translated(config, progress):
        response = await session.post(
            config.url(path), data=data, headers=all_headers, timeout=timeout
        )
        try:
            await _check_response(config, response)
            decoder = SSEDecoder()
            while chunk := await response.content.readany():
                progress.got_first_byte = True
                for event in decoder.feed(chunk):
                    yield event
            for event in decoder.close():
                yield event
        finally:
            # Closed, not drained: a no-op once the body was read to its end.
            response.close()


_JSON_SSE = {"accept": "text/event-stream", "content-type": "application/json"}


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
    except aiohttp.ConnectionTimeoutError as exc:  # these three before TimeoutError: they are
        message = f"{config.name} did not accept a connection within {config.connect_timeout:g} s"
        raise UpstreamTimeout(message, metadata=_cause(meta, exc)) from exc
    except aiohttp.SocketTimeoutError as exc:
        raise progress.silence() from exc
    except aiohttp.ServerTimeoutError as exc:
        raise UpstreamTimeout(f"{config.name} timed out", metadata=_cause(meta, exc)) from exc
    except TimeoutError as exc:  # the total limit
        raise progress.overall() from exc
    except aiohttp.ClientConnectorError as exc:
        raise ProviderError(f"cannot connect to {config.name}", metadata=_cause(meta, exc)) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        message = f"{config.name} broke off its response"
        raise BadUpstream(message, metadata=_cause(meta, exc)) from exc
    except aiohttp.ClientResponseError as exc:
        message = f"{config.name} garbled its response"
        raise BadUpstream(message, metadata=_cause(meta, exc)) from exc
    except aiohttp.ClientError as exc:
        message = f"lost the connection to {config.name}"
        raise ProviderError(message, metadata=_cause(meta, exc)) from exc
    except SSEError as exc:
        raise bad_chunk(config, "an event stream beyond our size limit") from exc


def _cause(meta: dict[str, str], exc: BaseException) -> dict[str, str]:
    return {**meta, "cause": type(exc).__name__}


async def _check_response(config: UpstreamConfig, response: aiohttp.ClientResponse) -> None:
    """Raise the typed error unless the upstream answered 2xx with a stream."""
    status = response.status
    content_type = response.headers.get("content-type", "").lower()
    if 200 <= status < 300 and not content_type.startswith("application/json"):
        return
    body = await _read_limited(response)
    if 200 <= status < 300:
        # Some servers answer a failed stream with a 200 JSON error object.
        raise _json_instead_of_stream(config, body)
    raise error_for_status(config, status, body, response.headers)


def _json_instead_of_stream(config: UpstreamConfig, body: bytes) -> TokenwireError:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "error" in payload:
        return error_from_payload(config, payload)
    text = body.decode("utf-8", "replace")
    return bad_chunk(config, "a JSON document instead of an event stream", text)


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    while len(body) < MAX_ERROR_BODY and (chunk := await response.content.readany()):
        body += chunk
    return bytes(body[:MAX_ERROR_BODY])
