"""`UpstreamConfig`: one HTTP upstream, built once at the edge and passed in.

The API key arrives resolved from its environment variable; limits and the URL
are checked here, at start-up, rather than on a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from server.providers.base import ModelCard
from server.providers.http_connection import Limits


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One HTTP upstream, built once from configuration and passed in.

    `api_key` is the resolved secret (never the variable's name); it is kept
    out of `repr` and out of every error. `supported` of None means the
    provider's own default parameter set. Timeouts are in seconds:
    `first_byte_timeout` bounds any silence of the upstream: the wait for its
    first byte (a slow prompt) and every pause after. A unary call is answered
    whole, so there it bounds the whole generation. `total_timeout` bounds the
    whole exchange.
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

    def limits(self) -> Limits:
        """The limits of one exchange, enforced at each wait for the upstream (never while
        our caller runs between events): silence is `first_byte_timeout`."""
        return Limits(
            connect=self.connect_timeout, read=self.first_byte_timeout, total=self.total_timeout
        )
