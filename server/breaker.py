"""A per-provider circuit breaker: stop sending to a provider that keeps failing.

closed ──N failures in a row──▶ open ──cooldown──▶ half-open ──probe ok──▶ closed
                                  ▲                    │
                                  └────probe fails─────┘
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class BreakerConfig:
    failures: int = 5  # consecutive failures that open the circuit
    cooldown: float = 30.0  # seconds before a probe is let through


class Breaker:
    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        cooled = self._clock() - self._opened_at >= self._config.cooldown
        return "half-open" if cooled else "open"

    def allow(self) -> bool:
        """Whether a request may go to the provider now (one probe at a time when half-open)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._failures, self._opened_at, self._probing = 0, None, False

    def release(self) -> None:
        """A probe ended without a verdict (its caller left): the next request may probe."""
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self._config.failures:
            self._opened_at, self._probing = self._clock(), False


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
