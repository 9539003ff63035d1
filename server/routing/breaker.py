"""Per-provider circuit breakers that open on a provider's failure rate, not on one tenant.

Each provider has a shared circuit and, beside it, one circuit per organization
calling it. A circuit keeps its calls' outcomes over a sliding window
(`window` seconds, in ten buckets) and opens when the window holds at least
`min_requests` calls of which at least `failure_rate` failed:

closed ──failure rate over the window──▶ open ──cooldown──▶ half-open ──probe ok──▶ closed
                                           ▲                     │
                                           └─────probe fails─────┘

Where a failure counts depends on whether the request itself may have caused it:

- The provider's failures count in the shared circuit, which stops everyone:
  no answer at all (connection refused or reset, timeouts), an answer saying
  it is unavailable, overloaded or slow (503, 529, 408, 504), 429, our own
  credentials refused (401-403), protocol garbage, a local model failing.
- Any other 5xx the upstream answered a request with (500, 502…, also as an
  error event inside its stream) may come from that request's content: it
  counts only in the calling organization's circuit, so one organization's
  failing requests can cut off only that organization from that provider. For
  the shared circuit such a call is an answer: the provider is up — unless
  `organizations` organizations have their circuits open at once, which says
  the provider fails whatever it is sent: then the shared circuit opens too.

(The caller's own mistakes, upstream 4xx, count as successes: the provider answered.)

A request goes to a provider when both its shared circuit and the caller's
organization circuit let it (each half-open circuit lets one probe through).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from server.errors import TokenwireError

# Upstream 5xx statuses that say the provider, not the request, is failing.
PROVIDER_STATUSES = frozenset({"503", "504", "529"})
BUCKETS = 10  # a window moves in steps of a tenth of its length
MAX_ORGANIZATIONS = 10_000  # per provider: idle ones are dropped first, then the oldest


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    window: float = 60.0  # seconds of outcomes a failure rate is taken over
    min_requests: int = 5  # calls in the window before the rate can open a circuit
    failure_rate: float = 0.5  # share of failed calls in the window that opens it
    cooldown: float = 30.0  # seconds before a probe is let through
    organizations: int = 3  # organizations cut off at once that cut off everyone


def blames_request(error: TokenwireError) -> bool:
    """Whether the upstream answered this request with an error its content may have caused."""
    status = error.metadata.get("upstream_status", "")
    return status.startswith("5") and status not in PROVIDER_STATUSES


@dataclass(slots=True)
class _Bucket:
    start: float
    calls: int = 0
    failures: int = 0


class _Window:
    """Calls and failures over the last `span` seconds."""

    def __init__(self, span: float) -> None:
        self._span = span
        self._width = span / BUCKETS
        self._buckets: deque[_Bucket] = deque()

    def add(self, now: float, failed: bool) -> None:
        self._expire(now)
        if not self._buckets or now - self._buckets[-1].start >= self._width:
            self._buckets.append(_Bucket(now))
        bucket = self._buckets[-1]
        bucket.calls += 1
        bucket.failures += failed

    def tripped(self, now: float, config: BreakerConfig) -> bool:
        self._expire(now)
        calls = sum(b.calls for b in self._buckets)
        failures = sum(b.failures for b in self._buckets)
        return calls >= config.min_requests and failures >= config.failure_rate * calls

    def idle(self, now: float) -> bool:
        self._expire(now)
        return not self._buckets

    def clear(self) -> None:
        self._buckets.clear()

    def _expire(self, now: float) -> None:
        while self._buckets and now - self._buckets[0].start >= self._span:
            self._buckets.popleft()


class Circuit:
    """One circuit: a window of outcomes and the closed / open / half-open state."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._window = _Window(config.window)
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        cooled = self._clock() - self._opened_at >= self._config.cooldown
        return "half-open" if cooled else "open"

    def admits(self) -> bool:
        """Whether a call may go now (without taking the probe: see `claim`)."""
        state = self.state
        return state == "closed" or (state == "half-open" and not self._probing)

    def claim(self) -> None:
        if self.state == "half-open":
            self._probing = True

    def release(self) -> None:
        self._probing = False

    def record(self, failed: bool) -> None:
        now = self._clock()
        if self._probing:
            self._probing = False
            self._opened_at = now if failed else None  # a failed probe: a whole new cooldown
            self._window.clear()
        elif self._opened_at is None:
            self._window.add(now, failed)
            if failed and self._window.tripped(now, self._config):
                self._opened_at = now
                self._window.clear()
        # open, not probing: the outcome of a call sent before it opened says nothing new

    def trip(self) -> None:
        self._opened_at, self._probing = self._clock(), False
        self._window.clear()

    def idle(self) -> bool:
        return self._opened_at is None and self._window.idle(self._clock())


class Breaker:
    """One provider's shared circuit and its organizations' circuits."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self.shared = Circuit(config, clock)
        self._organizations: dict[str | None, Circuit] = {}

    @property
    def state(self) -> str:
        """The shared circuit's state: whether the provider is cut off for everyone."""
        return self.shared.state

    def organization(self, organization: str | None) -> Circuit:
        circuit = self._organizations.get(organization)
        if circuit is None:
            if len(self._organizations) >= MAX_ORGANIZATIONS:
                self._forget()
            circuit = self._organizations[organization] = Circuit(self._config, self._clock)
        return circuit

    def allow(self, organization: str | None) -> bool:
        """Whether a request may go to the provider now (one probe at a time when half-open)."""
        own = self.organization(organization)
        if not (self.shared.admits() and own.admits()):
            return False
        self.shared.claim()
        own.claim()
        return True

    def success(self, organization: str | None) -> None:
        self.shared.record(failed=False)
        self.organization(organization).record(failed=False)

    def failure(self, organization: str | None, error: TokenwireError) -> None:
        own = self.organization(organization)
        if blames_request(error):
            own.record(failed=True)
            if own.state != "closed" and self._cut_off() >= self._config.organizations:
                self.shared.trip()  # not one organization's requests: the provider's
            else:
                self.shared.record(failed=False)  # the provider answered: it is up
        else:
            self.shared.record(failed=True)
            own.release()  # says nothing of the organization's requests

    def release(self, organization: str | None) -> None:
        """A probe ended without a verdict (its caller left): the next request may probe."""
        self.shared.release()
        self.organization(organization).release()

    def _cut_off(self) -> int:
        """How many organizations have their circuit open (or half-open) now."""
        return sum(c.state != "closed" for c in self._organizations.values())

    def _forget(self) -> None:
        """Bound the organizations kept: drop the idle ones, else the oldest half."""
        idle = [o for o, c in self._organizations.items() if c.idle()]
        for o in idle or list(self._organizations)[: MAX_ORGANIZATIONS // 2]:
            del self._organizations[o]


class Breakers:
    """One breaker per provider name."""

    def __init__(
        self, config: BreakerConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config or BreakerConfig()
        self._clock = clock
        self._by_name: dict[str, Breaker] = {}

    def __getitem__(self, provider: str) -> Breaker:
        if provider not in self._by_name:
            self._by_name[provider] = Breaker(self._config, self._clock)
        return self._by_name[provider]
