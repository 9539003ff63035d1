"""Traces: OpenTelemetry spans exported over OTLP/HTTP, off unless `--otlp-endpoint` is set.

`span(name, attributes)` is the one way to make a span: a context manager giving the span,
or None at no cost but a call when tracing is off. Spans nest through OpenTelemetry's
context; a request's span continues the W3C `traceparent`/`tracestate` its caller sent
(HTTP headers reach the server as gRPC metadata), and `propagated(headers)` adds the
current span's to a request going upstream. Span names and attributes follow the GenAI
semantic conventions (`chat {model}`, `execute_tool {name}`, `invoke_agent {name}`).

The tracer is process state, installed once at start by the composition root (like the
logging set-up) so that any part can open a span without being handed a tracer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

Attributes = Mapping[str, str | int | float | bool]
CLIENT = SpanKind.CLIENT
PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(frozen=True, slots=True)
class TracingConfig:
    # An OTLP/HTTP traces URL (http://collector:4318/v1/traces).
    endpoint: str
    service_name: str = "tokenwire"
    # Seconds spans wait to be sent in a batch.
    export_delay: float = 1.0
    # Put prompts, completions and tools' arguments and results on spans
    # (`server.observability.content`): they may hold personal data, so only when asked.
    capture_content: bool = False


@dataclass
class _Active:
    provider: TracerProvider | None = None
    tracer: trace.Tracer | None = None
    capture_content: bool = False


_ACTIVE = _Active()


def install(config: TracingConfig) -> None:
    """Start exporting spans (replacing an earlier installation: tests start several)."""
    # The SDK and exporter load only when tracing is on.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    shutdown()
    resource = Resource.create({"service.name": config.service_name})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=config.endpoint)
    delay_ms = int(config.export_delay * 1000)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay_ms))
    _ACTIVE.provider, _ACTIVE.tracer = provider, provider.get_tracer("tokenwire")
    _ACTIVE.capture_content = config.capture_content


def shutdown() -> None:
    """Send what is pending and stop (blocking: spans leave from a thread of their own)."""
    if _ACTIVE.provider is not None:
        _ACTIVE.provider.shutdown()
    _ACTIVE.provider = _ACTIVE.tracer = None
    _ACTIVE.capture_content = False


def flush() -> None:
    """Send every finished span now (blocking)."""
    if _ACTIVE.provider is not None:
        _ACTIVE.provider.force_flush()


def enabled() -> bool:
    return _ACTIVE.tracer is not None


def capturing_content() -> bool:
    """Whether spans carry prompt and completion text (tracing on and told to)."""
    return _ACTIVE.capture_content


# What `span` gives when tracing is off: one shared context manager (reusable), no generator
# made per call.
_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


def span(
    name: str, attributes: Attributes | None = None, kind: SpanKind = SpanKind.INTERNAL
) -> contextlib.AbstractContextManager[Span | None]:
    """A child of the current span, current while the block runs; None when tracing is off.
    An exception leaving the block marks the span as an error."""
    tracer = _ACTIVE.tracer
    if tracer is None:
        return _NO_SPAN
    return tracer.start_as_current_span(name, attributes=attributes, kind=kind)


def continued(
    name: str, carrier: Mapping[str, str], attributes: Attributes | None = None
) -> contextlib.AbstractContextManager[Span | None]:
    """`span`, but a child of the caller's span when `carrier` names one (traceparent)."""
    tracer = _ACTIVE.tracer
    if tracer is None:
        return _NO_SPAN
    parent = PROPAGATOR.extract(carrier, otel_context.get_current())
    return tracer.start_as_current_span(name, parent, attributes=attributes)


@dataclass(slots=True)
class Opened:
    """A span begun in one call and ended in another (a request's, around the pipeline)."""

    span: Span
    token: object

    def end(self, error: str | None = None, attributes: Attributes | None = None) -> None:
        if attributes:
            self.span.set_attributes(attributes)
        if error:
            self.span.set_status(Status(StatusCode.ERROR, error))
            self.span.set_attribute("error.type", error)
        self.span.end()
        with contextlib.suppress(ValueError):  # ended in another context than it began in
            otel_context.detach(self.token)  # type: ignore[arg-type]


def begin(
    name: str, carrier: Mapping[str, str], attributes: Attributes | None = None
) -> Opened | None:
    """A server span continuing the trace in `carrier` (traceparent, tracestate), made
    current until `Opened.end`; None when tracing is off."""
    tracer = _ACTIVE.tracer
    if tracer is None:
        return None
    parent = PROPAGATOR.extract(carrier)
    opened = tracer.start_span(name, parent, SpanKind.SERVER, attributes)
    token = otel_context.attach(trace.set_span_in_context(opened, parent))
    return Opened(opened, token)


def propagated(headers: Any) -> Any:
    """`headers` with the current span's traceparent added (a copy), or as they are when
    tracing is off or no span is current."""
    if _ACTIVE.tracer is None or not trace.get_current_span().get_span_context().is_valid:
        return headers
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return {**headers, **carrier}
