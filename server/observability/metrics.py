"""tokenwire's Prometheus metrics: one named object per metric, for any part to record into.

Names follow OpenTelemetry's GenAI semantic conventions where they exist, translated as
OpenTelemetry's Prometheus exporter does (dots become underscores, the unit a suffix):
`gen_ai.server.request.duration` is `gen_ai_server_request_duration_seconds`, its
attribute `gen_ai.provider.name` the label `gen_ai_provider_name`. tokenwire's own carry
the `tokenwire_` prefix. Labels take only bounded values: model ids from the catalog,
configured provider names, error codes; never request ids or user strings.

With `--workers N` every worker records into files under one directory
(prometheus-client's multiprocess mode, switched on by `PROMETHEUS_MULTIPROC_DIR` in the
worker's environment) and a scrape of any worker reads them all.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

# The attributes every request metric carries (gen_ai.* with dots as underscores).
REQUEST_LABELS = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "error_type",
)
# The semantic conventions' advised bucket boundaries.
DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
# tokenwire's own time per request is counted in microseconds to milliseconds.
OVERHEAD_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds a process keeps observations before writing them into its metrics (at most).
FLUSH_DELAY = 0.5


class Metrics:
    """Every metric tokenwire records, registered in `registry` (None in multiprocess mode,
    where the values live in the shared directory's files instead)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.multiprocess = registry is None
        self.request_duration = Histogram(
            "gen_ai_server_request_duration",
            "Time from a request's arrival to its last byte.",
            REQUEST_LABELS,
            unit="seconds",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per request by type (input, output).",
            (*REQUEST_LABELS[:4], "gen_ai_token_type"),
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token",
            "Streams: time from arrival to the first token.",
            REQUEST_LABELS[:4],
            unit="seconds",
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.time_per_output_token = Histogram(
            "gen_ai_server_time_per_output_token",
            "Streams: time per output token after the first one.",
            REQUEST_LABELS[:4],
            unit="seconds",
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "tokenwire_overhead",
            "Time a request spent in tokenwire itself: its duration "
            "less the time spent waiting on providers or the model.",
            ("gen_ai_operation_name",),
            unit="seconds",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "tokenwire_requests_in_flight",
            "Chat requests being served.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.attempts = Counter(
            "tokenwire_provider_attempts",
            "Tries of a provider by outcome: ok, retried (the "
            "same provider tried again), fell_back (the next one tried), error, cancelled, "
            "breaker_open (skipped, nothing sent: its circuit breaker was open).",
            ("gen_ai_provider_name", "outcome"),
            registry=r,
        )
        self.breaker_open = Gauge(
            "tokenwire_breaker_open",
            "1 while a provider's shared circuit breaker is open.",
            ("gen_ai_provider_name",),
            registry=r,
            multiprocess_mode="livemax",
        )
        self.refusals = Counter(
            "tokenwire_refusals",
            "Requests refused by a rate limit or a budget, by reason.",
            ("reason",),
            registry=r,
        )
        self.usage_queue_depth = Gauge(
            "tokenwire_usage_queue_depth",
            "Usage rows waiting for the database.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.usage_dropped = Counter(
            "tokenwire_usage_dropped", "Usage rows that could not be kept.", registry=r
        )
        self.agent_steps = Counter(
            "tokenwire_agent_steps", "Steps agents took (model calls).", registry=r
        )
        self.tool_calls = Counter(
            "tokenwire_tool_calls",
            "Tools agents ran here, by kind (a built-in tool's type, "
            "mcp, or unknown: a name the agent lacks) and outcome (ok, error, timeout).",
            ("kind", "outcome"),
            registry=r,
        )

    def count_at_scrape(self, in_flight: Callable[[], int]) -> bool:
        """Have a scrape read the in-flight gauge from `in_flight`; False in multiprocess mode,
        where a scrape reads only files and the gauge must be written as requests come and go."""
        if self.multiprocess:
            return False
        self.in_flight.set_function(in_flight)
        return True


class Tally:
    """One histogram child's observations since the last flush, added to it in one go.

    prometheus-client's `observe` takes two locks and walks the buckets (~4 µs on these
    machines, six of them a request were ~9% of its CPU); here an observation is a bisect
    and two additions, and `flush` hands the child the counts (its own values: whichever
    kind, in-process or multiprocess files)."""

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._bounds: list[float] = list(child._upper_bounds)  # pinned prometheus-client
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1  # le: the first bound >= value
        self._sum += value

    def flush(self) -> None:
        counts, self._counts = self._counts, [0] * len(self._bounds)
        for i, count in enumerate(counts):
            if count:
                self._child._buckets[i].inc(count)
        self._child._sum.inc(self._sum)
        self._sum = 0.0


class Series(NamedTuple):
    """The tallies of one request label set, made once per set (as bounded as the labels)."""

    duration: Tally
    input_tokens: Tally
    output_tokens: Tally
    time_to_first_token: Tally
    time_per_output_token: Tally


class Recorder:
    """Records into `metrics` through tallies, flushed at each scrape and `flush_delay`
    seconds after the first observation since the last flush (so other workers' scrapes
    see a worker's requests that soon)."""

    def __init__(self, metrics: Metrics, flush_delay: float = FLUSH_DELAY) -> None:
        self.metrics = metrics
        self._flush_delay = flush_delay
        self._tallies: list[Tally] = []
        self.overhead = self._tally(metrics.overhead.labels("chat"))
        self._series: dict[tuple[str, str, str, str], Series] = {}
        self._attempts: dict[tuple[str, str], int] = {}
        self._breakers: dict[str, bool] = {}
        self._flushing: asyncio.TimerHandle | None = None

    def _tally(self, child: Any) -> Tally:
        tally = Tally(child)
        self._tallies.append(tally)
        return tally

    def series(self, provider: str, request_model: str, response_model: str, error: str) -> Series:
        key = (provider, request_model, response_model, error)
        found = self._series.get(key)
        if found is None:
            m, labels = self.metrics, ("chat", provider, request_model, response_model)
            found = self._series[key] = Series(
                self._tally(m.request_duration.labels(*labels, error)),
                self._tally(m.token_usage.labels(*labels, "input")),
                self._tally(m.token_usage.labels(*labels, "output")),
                self._tally(m.time_to_first_token.labels(*labels)),
                self._tally(m.time_per_output_token.labels(*labels)),
            )
        return found

    def attempt(self, provider: str, outcome: str) -> None:
        key = (provider, outcome)
        self._attempts[key] = self._attempts.get(key, 0) + 1

    def agent_step(self) -> None:
        # Agents' counts go straight in: each step is a whole model call, no hot path.
        self.metrics.agent_steps.inc()

    def tool_call(self, kind: str, outcome: str) -> None:
        self.metrics.tool_calls.labels(kind, outcome).inc()

    def breaker(self, provider: str, is_open: bool) -> None:
        """The provider's breaker gauge, written at the flush when its state changed."""
        self._breakers[provider] = is_open

    def observed(self) -> None:
        """Called after a request's observations: schedules the next flush if none is."""
        if self._flushing is None:
            loop = asyncio.get_running_loop()
            self._flushing = loop.call_later(self._flush_delay, self.flush)

    def flush(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        for tally in self._tallies:
            tally.flush()
        attempts, self._attempts = self._attempts, {}
        for (provider, outcome), count in attempts.items():
            self.metrics.attempts.labels(provider, outcome).inc(count)
        breakers, self._breakers = self._breakers, {}
        for provider, is_open in breakers.items():
            self.metrics.breaker_open.labels(provider).set(int(is_open))


@dataclass(frozen=True, slots=True)
class Exposition:
    """The text a scrape of `/metrics` gets: this process's registry, or every worker's
    files in multiprocess mode."""

    registry: CollectorRegistry | None
    multiprocess_dir: str | None = None

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            assert self.registry is not None  # one or the other, by construction
            return generate_latest(self.registry)
        registry = CollectorRegistry()  # read afresh per scrape: workers come and go
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def create(multiprocess_dir: str | None) -> tuple[Metrics, Exposition]:
    """The metrics to record into and the exposition serving them."""
    if multiprocess_dir is not None:
        return Metrics(None), Exposition(None, multiprocess_dir)
    registry = CollectorRegistry()
    return Metrics(registry), Exposition(registry)
