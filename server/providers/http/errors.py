"""Upstream HTTP statuses and error payloads as `server.errors`, the key cut out.

    HTTP 429                               RateLimited     429 (Retry-After)
    HTTP 408, 504                          UpstreamTimeout 504
    HTTP 401, 402, 403 (our credentials)   ProviderError   503
    HTTP 422                               Unprocessable   422
    other HTTP 4xx                         InvalidRequest  400
    HTTP 503, 529 (overloaded)             UpstreamUnavailable 503 (not processed; Retry-After)
    other HTTP 5xx                         ProviderError   503
    garbage chunks                         BadUpstream     502

The upstream's own message travels in `metadata["upstream_message"]`, with the
API key cut out of it: some upstreams echo the key they were given.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from server.errors import (
    BadUpstream,
    InvalidRequest,
    ProviderError,
    RateLimited,
    TokenwireError,
    Unprocessable,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from server.providers.http.config import UpstreamConfig

DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 does not say
# Statuses by which an upstream says it did not take the request on (503 Service Unavailable;
# 529, Anthropic's overloaded). 502 and 504 are not among them: a proxy answering so may have
# handed the request to a backend that is generating still.
NOT_PROCESSED = frozenset({503, 529})
MAX_UPSTREAM_MESSAGE = 1000  # characters of the upstream's message we pass on
REDACTED = "[redacted]"

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


def redact(config: UpstreamConfig, text: str) -> str:
    """`text` with the API key cut out."""
    return text.replace(config.api_key, REDACTED) if config.api_key else text


def error_for_status(
    config: UpstreamConfig,
    status: int,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> TokenwireError:
    """The typed error for an upstream answering `status` with `body`."""
    headers = headers or {}
    message = redact(config, _upstream_message(body)) or f"HTTP {status}"
    delay = retry_after(headers)
    error = _error_for(config, status, message, delay)
    if isinstance(error, UpstreamUnavailable) and _says_when(headers):
        # A 503 may say when to come back, as a 429 does: the client and the router hear it.
        error.metadata["retry_after"] = str(max(1, math.ceil(delay)))
    return error


def _says_when(headers: Mapping[str, str]) -> bool:
    return "retry-after" in headers or "retry-after-ms" in headers


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
    if status in NOT_PROCESSED:
        return UpstreamUnavailable(f"{name} is unavailable (HTTP {status})", metadata=meta)
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


def decode_json(config: UpstreamConfig, data: str | bytes, what: str = "a chunk") -> dict[str, Any]:
    """The JSON object in `data` (a chunk, or a whole answer), or `BadUpstream`."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise bad_chunk(config, f"{what} that is not valid JSON", _text(data)) from None
    if not isinstance(value, dict):
        raise bad_chunk(config, f"{what} that is not a JSON object", _text(data))
    return value


def _text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data[:200].decode("utf-8", "replace")
