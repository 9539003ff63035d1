"""A `Tally` flushed into a histogram leaves exactly what observing each value would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.observability.metrics import TOKEN_BUCKETS, Tally

VALUES = (0, 1, 1.5, 4, 4.000001, 16, 10**7, 3, 1024, 1024, 0.5)


def histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    return registry, Histogram("h", "h", ("a",), buckets=TOKEN_BUCKETS, registry=registry)


def test_flushed_tally_equals_direct_observations() -> None:
    direct_registry, direct = histogram()
    tallied_registry, tallied = histogram()
    tally = Tally(tallied.labels("x"))
    for v in VALUES:
        direct.labels("x").observe(v)
        tally.observe(v)
    tally.flush()
    tally.flush()  # a second flush adds nothing
    assert samples(tallied_registry) == samples(direct_registry)


def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    text = generate_latest(registry).decode()
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")  # when each was made: differs by construction
    ]
