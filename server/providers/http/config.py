"""`UpstreamConfig`: one HTTP upstream, built once at the edge and passed in.

The API key arrives resolved from its environment variable; limits, headers and
the URL are checked here, at start-up, rather than on a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from server.providers.base import ModelCard

# Headers that frame the message or the connection are the HTTP client's to write: one from
# the configuration would go out beside the client's own, and every request would fail.
CLIENT_OWNED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"}
)
# RFC 9110 5.1: a header name is a token.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
POOL_SIZE = 512  # connections per provider at once; beyond, requests wait (within total_timeout)


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One HTTP upstream, built once from configuration and passed in.

    `api_key` is the resolved secret (never the variable's name); it is kept
    out of `repr` and out of every error. `supported` of None means the
    provider's own default parameter set. Timeouts are in seconds:
    `first_byte_timeout` bounds any silence of the upstream: the wait for its
    first byte (a slow prompt) and every pause after. A unary call is answered
    whole, so there it bounds the whole generation. `total_timeout` bounds the
    whole exchange, from the request's start: the wait for a pooled connection
    (at most `pool_size` per provider), every silence, and a consumer that stops
    reading a stream (its upstream connection is closed at the deadline).
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
    pool_size: int = POOL_SIZE
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
        if self.pool_size < 1:
            raise ValueError(f"upstream {self.name}: pool_size must be at least 1")
        for name, value in self.headers.items():
            _check_header(self.name, name, value)
        # A bad URL is a configuration mistake: refuse it at start-up, not per request.
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"upstream {self.name}: base_url must be an http(s) URL")


def _check_header(upstream: str, name: object, value: object) -> None:
    """Refuse, at start-up, a configured header the client owns or cannot send as given."""
    where = f"upstream {upstream}: header {name!r}"
    if not isinstance(name, str) or not isinstance(value, str):
        raise ValueError(f"{where}: names and values must be strings")
    if name.lower() in CLIENT_OWNED_HEADERS:
        owned = ", ".join(sorted(CLIENT_OWNED_HEADERS))
        raise ValueError(f"{where} is the HTTP client's own and may not be configured ({owned})")
    if not name or not set(name) <= _TOKEN:
        raise ValueError(f"{where} is not a valid header name")
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{where} holds a line break or NUL")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{where} must be latin-1 text") from None
