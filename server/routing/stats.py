"""Latency and throughput tokenwire measures itself, per endpoint, for routing.

Latency is the time to the first event; throughput is completion tokens per
second after it. A window of recent requests gives percentiles.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field

PERCENTILES = ("p50", "p75", "p90", "p99")


@dataclass
class _Window:
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=100))

    def percentile(self, name: str) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        rank = int(name[1:]) / 100
        return ordered[min(len(ordered) - 1, int(rank * len(ordered)))]


class Stats:
    def __init__(self) -> None:
        self._latency: defaultdict[tuple[str, str], _Window] = defaultdict(_Window)
        self._throughput: defaultdict[tuple[str, str], _Window] = defaultdict(_Window)

    def observe(
        self, provider: str, model: str, latency: float, tokens: int, duration: float
    ) -> None:
        """One successful request: seconds to first event, tokens after it, seconds they took."""
        key = (provider, model)
        self._latency[key].samples.append(latency)
        if tokens > 1 and duration > 0:
            self._throughput[key].samples.append(tokens / duration)

    def latency(self, provider: str, model: str, percentile: str = "p50") -> float | None:
        window = self._latency.get((provider, model))
        return window.percentile(percentile) if window else None

    def throughput(self, provider: str, model: str, percentile: str = "p50") -> float | None:
        window = self._throughput.get((provider, model))
        return window.percentile(percentile) if window else None
