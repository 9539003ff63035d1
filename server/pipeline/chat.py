"""The chat pipeline: stages, routing and usage around one request (the order: ARCHITECTURE.md).

The pipeline takes a protobuf request and yields protobuf chunks; it knows nothing of
grpc (`server.rpc.chat_service` serves it). Whatever happens — success, error, fallback,
a client that leaves — each request ends with exactly one `UsageRecord`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from server.errors import SHUTTING_DOWN, ShuttingDown, TokenwireError
from server.observability import tracing
from server.pipeline import assemble, parameters
from server.pipeline.context import CallInfo, RequestContext, Stage, UsageRecord, UsageSink
from server.pipeline.finishers import StreamFinishing, finish_whole
from server.providers import base
from server.routing.catalog import Endpoint
from server.routing.router import Opened, Router
from server.tokens import estimated_usage
from server.usage import trace
from tokenwire.chat.v1 import chat_pb2

log = logging.getLogger("tokenwire.chat")
Streamed = chat_pb2.StreamChatCompletionResponse


@dataclass
class Outcome:
    """What became of one request, gathered as it runs."""

    opened: Opened | None = None
    usage: base.Usage | None = None
    first_at: float | None = None
    error: TokenwireError | None = None
    cancelled: bool = False
    generated: int = 0  # characters of output seen, to estimate a cancelled request's usage

    def observe(self, event: base.Event) -> None:
        if isinstance(event, base.Usage):
            self.usage = event
            return
        if self.first_at is None:
            self.first_at = time.monotonic()
        if isinstance(event, base.Delta):
            self.generated += len(event.content) + len(event.reasoning) + len(event.refusal)
            for call in event.tool_calls:
                self.generated += len(call.name or "") + len(call.arguments)

    def billed(self) -> base.Usage | None:
        """The provider's usage; for a request cancelled once it had started answering
        (the provider reports usage only at the end), an estimate of what it generated
        and of its prompt, marked `estimated`, so leaving early does not make it free."""
        if self.usage is None and self.cancelled and self.opened is not None:
            self.usage = estimated_usage(self.opened.generation, self.generated)
        return self.usage

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self.cancelled = True
            if exc.args[:1] == (SHUTTING_DOWN,):  # the server's stop cut it off, not the client
                self.error = ShuttingDown(SHUTTING_DOWN)
        elif isinstance(exc, TokenwireError):
            self.error = exc
        else:
            self.error = TokenwireError("internal error")


# Told that the stages have run: only stages set response metadata, so it is complete.
Prepared = Callable[[], Awaitable[None]]


class ChatPipeline:
    def __init__(self, router: Router, usage: UsageSink, stages: Sequence[Stage] = ()) -> None:
        self.router = router
        self.usage = usage
        self.stages = tuple(stages)
        # Stages that name a span (`span_name`) run in one when tracing is on.
        self._span_names = tuple(getattr(s, "span_name", None) for s in self.stages)

    async def complete(
        self, request: chat_pb2.CreateChatCompletionRequest, call: CallInfo
    ) -> chat_pb2.CreateChatCompletionResponse:
        ctx, outcome = RequestContext(call, request, streamed=False), Outcome()
        try:
            opened = await self._open(ctx, outcome)
            collector = assemble.Collector(_header(ctx, opened), opened.generation.logprobs)
            async for event in opened.events:
                outcome.observe(event)
                collector.add(event)
            response = collector.response()
            finish_whole(ctx.finishers, response)
            return _priced(response, opened)
        except BaseException as exc:
            outcome.fail(exc)
            raise
        finally:
            await self._finish(ctx, outcome)

    async def stream(
        self,
        request: chat_pb2.CreateChatCompletionRequest,
        call: CallInfo,
        prepared: Prepared | None = None,
    ) -> AsyncGenerator[chat_pb2.StreamChatCompletionResponse, None]:
        """The chunks of one answer, as the streaming RPC's messages; `prepared` is awaited
        once the stages have run, when the response metadata (`call.headers`) is complete,
        before routing and the first token."""
        ctx, outcome = RequestContext(call, request, streamed=True), Outcome()
        try:
            opened = await self._open(ctx, outcome, prepared)
            writer = assemble.ChunkWriter(_header(ctx, opened))
            include_usage = request.stream_options.include_usage
            finishing = StreamFinishing(ctx.finishers) if ctx.finishers else None
            echo = _upstream_body(request, opened)
            async for event in opened.events:
                outcome.observe(event)
                if echo is not None:  # before the first answer: the upstream took the body
                    yield writer.debug(echo)
                    echo = None
                if isinstance(event, base.Delta):
                    message = writer.delta(event)
                    if finishing is not None:
                        finishing.see(event, message.chunk)
                    yield message
                elif include_usage:
                    message = writer.usage(event)
                    _price(message.chunk.usage, opened)
                    yield message
        except BaseException as exc:
            outcome.fail(exc)
            raise
        finally:
            await self._finish(ctx, outcome)

    async def _open(
        self, ctx: RequestContext, outcome: Outcome, prepared: Prepared | None = None
    ) -> Opened:
        """Everything before the first event: stages, validation, routing."""
        parameters.check_implemented(ctx.request)
        if tracing.enabled():
            await self._before_traced(ctx)
        else:
            for stage in self.stages:
                await stage.before(ctx)
        if prepared is not None:
            await prepared()
        outcome.opened = await self.router.open(ctx, self.router.plan(ctx))
        return outcome.opened

    async def _before_traced(self, ctx: RequestContext) -> None:
        """The stages, those that name a span in one (template expansion, memory recall)."""
        for stage, name in zip(self.stages, self._span_names, strict=True):
            if name is None:
                await stage.before(ctx)
                continue
            with tracing.span(name):
                await stage.before(ctx)

    async def _finish(self, ctx: RequestContext, outcome: Outcome) -> None:
        """Account for the request before the response goes out, so the next request sees
        its charges (the usage store writes in the background: see `UsageStore`)."""
        opened = outcome.opened
        if opened is not None:
            if outcome.cancelled:  # billed for what it generated, whoever cut it off
                self.router.cancelled(ctx, opened, outcome.billed())
            elif outcome.error is not None:
                self.router.failed(ctx, opened.endpoint, opened.started, outcome.error)
            else:
                self.router.succeeded(ctx, opened, outcome.usage)
        record = usage_record(ctx, outcome)
        try:
            await self.usage.record(record)
        except Exception:
            log.exception("could not record the usage of request %s", record.request_id)
        for stage in self.stages:  # each on its own: one failing must not skip the others
            try:
                await stage.after(ctx, record)
            except Exception:
                log.exception("stage %s failed after request %s", stage, ctx.call.request_id)


def _upstream_body(request: chat_pb2.CreateChatCompletionRequest, opened: Opened) -> str | None:
    """The body sent upstream, when `debug.echo_upstream_body` asks and the provider has one."""
    provider = opened.endpoint.provider
    if not request.debug.echo_upstream_body or not isinstance(provider, base.EchoesBody):
        return None
    return provider.upstream_body(opened.generation)


def _header(ctx: RequestContext, opened: Opened) -> assemble.Header:
    return assemble.Header(
        id=f"chatcmpl-{ctx.call.request_id.removeprefix('req_')}",
        created=int(ctx.created),
        model=opened.endpoint.model,
        provider=opened.endpoint.name,
        dropped=opened.dropped,
    )


def _priced(
    response: chat_pb2.CreateChatCompletionResponse, opened: Opened
) -> chat_pb2.CreateChatCompletionResponse:
    if response.HasField("usage"):
        _price(response.usage, opened)
    return response


def _price(usage: chat_pb2.Usage, opened: Opened) -> None:
    details = usage.prompt_tokens_details
    cost = opened.endpoint.cost(
        usage.prompt_tokens,
        usage.completion_tokens,
        details.cached_tokens,
        details.cache_write_tokens,
    )
    if cost:
        usage.cost = cost


_NO_USAGE = base.Usage(0, 0)  # a request that got no answer


def _cost(endpoint: Endpoint | None, u: base.Usage) -> float:
    if endpoint is None:
        return 0.0
    return endpoint.cost(
        u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.cache_write_tokens
    )


def usage_record(ctx: RequestContext, outcome: Outcome) -> UsageRecord:
    usage = outcome.usage or _NO_USAGE
    opened = outcome.opened
    endpoint = opened.endpoint if opened else None
    now = time.monotonic()
    error = outcome.error
    return UsageRecord(
        request_id=ctx.call.request_id,
        created=ctx.created,
        key_id=ctx.principal.key_id,
        organization_id=ctx.principal.organization_id,
        session_id=ctx.session_id,
        user=ctx.request.user if ctx.request.HasField("user") else None,
        model_requested=ctx.model_requested or ctx.request.model,  # a template's when none
        model=endpoint.model if endpoint else None,
        provider=endpoint.name if endpoint else None,
        attempts=tuple(ctx.attempts),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        estimated=usage.estimated,
        cost_usd=_cost(endpoint, usage),
        latency_ms=(now - ctx.started) * 1000,
        ttft_ms=(outcome.first_at - ctx.started) * 1000 if outcome.first_at else None,
        status=(error.code or error.type) if error else "cancelled" if outcome.cancelled else "ok",
        http_status=error.http_status if error else 499 if outcome.cancelled else 200,
        streamed=ctx.streamed,
        cancelled=outcome.cancelled,
        template=ctx.template,
        template_version=ctx.template_version,
        memory_ids=tuple(ctx.memory_ids),
        trace_id=trace.trace_id(ctx.request),
        trace=trace.trace_json(ctx.request),
    )
