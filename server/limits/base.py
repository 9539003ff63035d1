"""What a limiter counts and what it answers.

A `Check` is one scope (an API key, an organization, a client IP) with its
`Rate`: requests and tokens per fixed window of `window` seconds. Windows are
numbered from the Unix epoch (`floor(now / window)`), so replicas sharing
Redis agree on them and tests move through them with an injected clock.

`Limiter.acquire` is all or nothing: a request counts against every scope
or, when any scope is exhausted, against none. Tokens are only known after
the call, so `spend` adds them then; a window whose tokens are used up
refuses the next request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from server.errors import TokenwireError


@dataclass(frozen=True, slots=True)
class Rate:
    """Requests and tokens per window of `window` seconds (None: unlimited)."""

    requests: int | None = None
    tokens: int | None = None
    window: int = 60

    @property
    def unlimited(self) -> bool:
        return self.requests is None and self.tokens is None


@dataclass(frozen=True, slots=True)
class Check:
    """One scope to count a request against: `scope` is its counter's name."""

    scope: str  # "key:key_…", "org:acme", "ip:10.0.0.1"
    label: str  # what the client is told: "this API key", "your IP address"
    rate: Rate


@dataclass(frozen=True, slots=True)
class Slot:
    """The counters of one check in the window `now` falls in."""

    requests_key: str
    tokens_key: str
    reset: float  # seconds until the window ends
    ttl_ms: int  # how long the counters are kept


def slot(check: Check, now: float) -> Slot:
    window = check.rate.window
    index = math.floor(now / window)
    name = f"{check.scope}:{window}:{index}"
    reset = (index + 1) * window - now
    return Slot(f"{name}:r", f"{name}:t", reset, int((reset + 1) * 1000))


@dataclass(frozen=True, slots=True)
class ScopeState:
    """One scope's counters after the decision (requests include this one when allowed)."""

    check: Check
    requests: int
    tokens: int
    reset: float
    blocked: bool

    @property
    def remaining_requests(self) -> int | None:
        limit = self.check.rate.requests
        return None if limit is None else max(0, limit - self.requests)

    @property
    def remaining_tokens(self) -> int | None:
        limit = self.check.rate.tokens
        return None if limit is None else max(0, limit - self.tokens)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    states: tuple[ScopeState, ...] = ()
    degraded: bool = False  # the limiter was unreachable and failed open

    @property
    def blocked(self) -> tuple[ScopeState, ...]:
        return tuple(s for s in self.states if s.blocked)

    @property
    def retry_after(self) -> float:
        """Whole seconds until every blocking window has ended (at least 1)."""
        return float(max((math.ceil(s.reset) for s in self.blocked), default=1) or 1)


def is_blocked(check: Check, requests: int, tokens: int) -> bool:
    """Whether counters already used this window leave no room for one more request."""
    rate = check.rate
    return (rate.requests is not None and requests >= rate.requests) or (
        rate.tokens is not None and tokens >= rate.tokens
    )


def verdict(
    checks: Sequence[Check], slots: Sequence[Slot], counts: Sequence[tuple[int, int]], allowed: bool
) -> Verdict:
    """The verdict from each check's counters (`counts`: after counting, when allowed)."""
    states = tuple(
        ScopeState(c, r, t, s.reset, blocked=not allowed and is_blocked(c, r, t))
        for c, s, (r, t) in zip(checks, slots, counts, strict=True)
    )
    return Verdict(allowed, states)


class Limiter(Protocol):
    async def acquire(self, checks: Sequence[Check]) -> Verdict:
        """Count one request against every check, or against none if any is exhausted."""
        ...

    async def spend(self, checks: Sequence[Check], tokens: int) -> None:
        """Add a finished request's tokens to the checks' current windows."""
        ...

    async def aclose(self) -> None: ...


class LimiterUnavailable(TokenwireError):
    """The shared limiter cannot be reached and the configuration says fail closed."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    type = "api_error"
    code = "rate_limiter_unavailable"
