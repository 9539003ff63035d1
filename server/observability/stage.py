"""`ObservingStage`: the pipeline stage that observes each chat request as a whole.

It reads the finished `UsageRecord` (`after`), which every request gets whatever became of
it, so nothing on the streaming path works per chunk: it records the request's metrics,
ends its span, writes its access-log line, and tells the client where the time went as a
`server-timing` header (trailing metadata on gRPC; an HTTP header on a unary REST answer).
Placed first among the stages, its `before` runs for every request that reaches them: the
in-flight gauge, and the request's span (`chat {model}`, continuing the caller's
traceparent), current while the later stages and the router run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.trace import Span

from server.observability import content, logs, tracing
from server.observability.content import INPUT, OUTPUT
from server.observability.metrics import Metrics, Recorder, Series
from server.pipeline.context import Attempt, RequestContext, UsageRecord
from server.routing.router import BREAKER_OPEN
from tokenwire.chat.v1 import chat_pb2

# Error codes that are refusals by tokenwire's own limits rather than failures.
REFUSALS = {"rate_limit_exceeded": "rate_limit", "budget_exceeded": "budget"}
OTHER = "_OTHER"  # a requested model the catalog does not know: not a label value of its own
MAX_KNOWN = 1024  # model ids remembered as known (aliases included), for no lookup per request


@dataclass(frozen=True, slots=True)
class Observers:
    """What to observe: `metrics` (None: off), whether to write the access log, and the
    catalog and breakers' answers the metrics need (`known`: a model id the catalog serves,
    bounding the label; `breaker_open`: a provider's shared circuit is open)."""

    metrics: Recorder | None
    access_log: bool
    known: Callable[[str], bool]
    breaker_open: Callable[[str], bool]
    # The usage store's rows waiting for the database and rows lost so far.
    usage_backlog: Callable[[], tuple[int, int]] = lambda: (0, 0)


class ObservingStage:
    def __init__(self, observers: Observers) -> None:
        self._o = observers
        self._open: set[int] = set()  # the requests counted in flight, by id(ctx)
        self._spans: dict[int, tracing.Opened] = {}  # the requests' spans, by id(ctx)
        self._dropped = 0  # usage rows lost, as last counted
        self._queued = -1  # usage rows queued, as last set
        self._known: set[str] = set()  # requested model ids the catalog serves, as seen
        self._recorder = observers.metrics
        # In one process a scrape counts the requests in flight itself: nothing per request.
        self._counted_at_scrape = bool(
            observers.metrics and observers.metrics.metrics.count_at_scrape(lambda: len(self._open))
        )

    async def before(self, ctx: RequestContext) -> None:
        if self._recorder is not None:
            self._open.add(id(ctx))
            if not self._counted_at_scrape:
                self._recorder.metrics.in_flight.inc()
        if tracing.enabled():
            opened = _request_span(ctx)
            if opened is not None:
                self._spans[id(ctx)] = opened
                if tracing.capturing_content():
                    ctx.finishers.append(_Completion(opened.span))

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        if self._spans:
            opened = self._spans.pop(id(ctx), None)
            if opened is not None:
                if tracing.capturing_content():  # the messages as the stages left them
                    opened.span.set_attribute(INPUT, content.input_messages(ctx.request.messages))
                error = None if record.status == "ok" else record.status
                opened.end(error, _span_attributes(record))
        waited = sum(a.latency_ms for a in record.attempts)
        overhead = max(0.0, record.latency_ms - waited)
        ctx.headers["server-timing"] = f"upstream;dur={waited:.3f}, overhead;dur={overhead:.3f}"
        if self._recorder is not None:
            m = self._recorder.metrics
            if id(ctx) in self._open:  # a request refused before the stages never entered
                self._open.discard(id(ctx))
                if not self._counted_at_scrape:
                    m.in_flight.dec()
            self.observe(self._recorder, record, overhead)
            self._recorder.observed()
            self._usage(m)
        if self._o.access_log:
            logs.access(record)

    def observe(self, c: Recorder, record: UsageRecord, overhead_ms: float) -> None:
        model = record.model_requested
        if model not in self._known:
            if not (model and self._o.known(model)):
                model = OTHER
            elif len(self._known) < MAX_KNOWN:
                self._known.add(model)
        error = "" if record.status == "ok" else record.status
        series = c.series(record.provider or "", model, record.model or "", error)
        series.duration.observe(record.latency_ms / 1000)
        c.overhead.observe(overhead_ms / 1000)
        if error in REFUSALS:
            c.metrics.refusals.labels(REFUSALS[error]).inc()
        attempts = record.attempts
        for i, a in enumerate(attempts):
            c.attempt(a.provider, _outcome(a, attempts[i + 1 :]))
            c.breaker(a.provider, self._o.breaker_open(a.provider))
        if record.status == "ok" or record.completion_tokens:
            _tokens(series, record)

    def _usage(self, m: Metrics) -> None:
        """The usage writer's queue and losses, as this request leaves them."""
        queued, dropped = self._o.usage_backlog()
        if queued != self._queued:
            m.usage_queue_depth.set(queued)
            self._queued = queued
        if dropped > self._dropped:
            m.usage_dropped.inc(dropped - self._dropped)
            self._dropped = dropped


class _Completion:
    """A finisher putting the answer on the request's span (content capture on). It is the
    first finisher, so the span has what the model said, before plugins amend it."""

    def __init__(self, span: Span) -> None:
        self._span = span
        self._output = content.Output()

    def whole(self, choice: chat_pb2.Choice) -> None:
        self.last(choice, choice.message)

    def last(
        self, choice: chat_pb2.Choice | chat_pb2.ChunkChoice, message: chat_pb2.ResponseMessage
    ) -> None:
        answer = self._output.add(message.content, message.tool_calls, choice.finish_reason)
        self._span.set_attribute(OUTPUT, answer)


def _tokens(series: Series, record: UsageRecord) -> None:
    series.input_tokens.observe(record.prompt_tokens)
    series.output_tokens.observe(record.completion_tokens)
    if record.ttft_ms is None or not record.streamed:  # a whole answer has no first token
        return
    series.time_to_first_token.observe(record.ttft_ms / 1000)
    if record.completion_tokens > 1:
        per_token = (record.latency_ms - record.ttft_ms) / (record.completion_tokens - 1)
        series.time_per_output_token.observe(max(0.0, per_token / 1000))


def _outcome(attempt: Attempt, later: tuple[Attempt, ...]) -> str:
    """ok / cancelled / error / breaker_open, or retried / fell_back for an error another
    try followed (a provider skipped for its open breaker is no try)."""
    if attempt.outcome != "error":
        return attempt.outcome
    tried = next((a for a in later if a.outcome != BREAKER_OPEN), None)
    if tried is None:
        return "error"
    return "retried" if tried.provider == attempt.provider else "fell_back"


def _span_attributes(record: UsageRecord) -> dict[str, str | int | float | bool]:
    attributes: dict[str, str | int | float | bool] = {
        "gen_ai.usage.input_tokens": record.prompt_tokens,
        "gen_ai.usage.output_tokens": record.completion_tokens,
        "tokenwire.request_id": record.request_id,
        "tokenwire.streamed": record.streamed,
        "http.response.status_code": record.http_status,
    }
    if record.provider:
        attributes["gen_ai.provider.name"] = record.provider
    if record.model:
        attributes["gen_ai.response.model"] = record.model
    if record.organization_id:
        attributes["tokenwire.organization_id"] = record.organization_id
    return attributes


_HEX = re.compile(r"[0-9a-f]+")


def _request_span(ctx: RequestContext) -> tracing.Opened | None:
    """The request's span: `chat {model}` continuing the caller's traceparent, or the body's
    `trace` fields as OpenRouter reads them (trace_id and parent_span_id when no header says
    otherwise; span_name names the span; trace_name and generation_name are attributes)."""
    request = ctx.request
    attributes: dict[str, str | int | float | bool] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": request.model,
    }
    name, carrier = f"chat {request.model}".rstrip(), ctx.call.metadata
    if request.HasField("trace"):
        fields = request.trace
        name = fields.span_name or name
        for key in ("trace_name", "generation_name"):
            if fields.HasField(key):
                attributes[f"tokenwire.{key}"] = getattr(fields, key)
        if "traceparent" not in carrier and _hex(fields.trace_id, 32):
            parent = fields.parent_span_id
            if not _hex(parent, 16):
                parent = os.urandom(8).hex()  # joins the trace, under no span it knows
            carrier = {"traceparent": f"00-{fields.trace_id}-{parent}-01"}
    return tracing.begin(name, carrier, attributes)


def _hex(value: str, digits: int) -> bool:
    return len(value) == digits and _HEX.fullmatch(value) is not None and value.strip("0") != ""
