"""HTTP metrics of a gateway running on its own (`tokenwire gateway`): its requests by
method, route and status, their duration, and those in flight.

Such a gateway serves no chat itself (its gRPC server counts those, in
`server.observability.metrics`): these are the HTTP hop it adds. Names follow
OpenTelemetry's HTTP semantic conventions as its Prometheus exporter writes them
(`http.server.request.duration` is `http_server_request_duration_seconds`); the route is the
template a request matched (`/v1/models/{model=**}`), never its raw path, so the labels stay
bounded.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, Histogram

from gateway.http import ASGIMessage, Receive, Scope, Send
from server.observability.health import Answer
from server.observability.metrics import CONTENT_TYPE, Exposition

if TYPE_CHECKING:
    from gateway.app import Gateway

App = Callable[[Scope, Receive, Send], Awaitable[None]]
RouteOf = Callable[[str, str], str | None]  # method, path -> route template, None: no route

# The conventions' advised boundaries (seconds).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER = "_OTHER"  # a method or path no route knows: one label value for all of them
GONE = "499"  # the client left before any answer began (nginx's code for it)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "http_server_request_duration",
            "HTTP requests by method, route and status: "
            "arrival to the answer's last byte (a stream's whole length).",
            ("http_request_method", "http_route", "http_response_status_code"),
            unit="seconds",
            buckets=BUCKETS,
            registry=registry,
        )
        self.active = Gauge(
            "http_server_active_requests", "HTTP requests being served.", registry=registry
        )


class Measured:
    """ASGI middleware recording every HTTP request `app` serves into `metrics`."""

    def __init__(self, app: App, metrics: HttpMetrics, route_of: RouteOf) -> None:
        self.app = app
        self.metrics = metrics
        self._route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [GONE]

        async def sending(message: ASGIMessage) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        self.metrics.active.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.active.dec()
            labels = (*self._labels(scope), status[0])
            self.metrics.duration.labels(*labels).observe(time.perf_counter() - started)

    def _labels(self, scope: Scope) -> tuple[str, str]:
        method = scope["method"]
        if method not in METHODS:
            return OTHER, OTHER
        return method, self._route_of(method, scope["path"]) or OTHER


def route_of(gateway: Gateway) -> RouteOf:
    """The route template `gateway` serves a request by, or the path of one of its own
    fixed routes (`/metrics`, `/openapi.json`)."""

    def route(method: str, path: str) -> str | None:
        if path in gateway.local or path == "/openapi.json":
            return path
        match = gateway.router.match(method, path)
        return match.routes[0].template if match is not None else None

    return route


def for_gateway() -> tuple[Callable[[], Awaitable[Answer]], Callable[[Gateway], App]]:
    """A standalone gateway's `GET /metrics`, and the wrapper measuring its requests."""
    registry = CollectorRegistry()
    recorded, exposition = HttpMetrics(registry), Exposition(registry)

    async def scrape() -> Answer:
        return Answer(200, exposition.render(), CONTENT_TYPE)

    def measured(gateway: Gateway) -> App:
        return Measured(gateway, recorded, route_of(gateway))

    return scrape, measured
