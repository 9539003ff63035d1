"""The gateway's settings, built once at the edge and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.protocol import HeadLimits


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    # Largest request body accepted; larger ones get 413.
    max_body_bytes: int = 8 * 1024 * 1024
    # Bodies whose parsing takes milliseconds are parsed off the event loop, so that other
    # clients are not stalled: those this large, or holding this many JSON objects (each
    # costs a few µs to transcode; handing a body to a thread costs ~150 µs).
    offload_body_bytes: int = 1024 * 1024
    offload_objects: int = 512
    # Seconds a body may keep arriving after its first part; then 408.
    body_timeout: float = 30.0
    # Deadline, size and header count of a request head (408, 431).
    head: HeadLimits = field(default_factory=HeadLimits)
    # Seconds between `: keepalive` comments while a stream has nothing to send.
    keepalive_interval: float = 15.0
    # Headers forwarded to the server as gRPC metadata (lower-case).
    forwarded_headers: tuple[str, ...] = (
        "authorization",
        "organization_id",
        "x-session-id",
        "x-request-id",
        "traceparent",
        "tracestate",
        "x-tokenwire-memory",
    )
    # Response metadata forwarded to the client as HTTP headers, by prefix.
    response_header_prefixes: tuple[str, ...] = (
        "x-ratelimit-",
        "x-tokenwire-",
        "retry-after",
        "www-authenticate",
        "x-session-id",
        "server-timing",
    )
