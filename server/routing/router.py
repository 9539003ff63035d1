"""Runs a request on the first candidate endpoint that can serve it.

Before the first event reaches the client, an upstream failure (a connection
error, timeout, 429, 5xx or a broken answer) moves on to the next candidate.
The same endpoint is tried again first, with exponential backoff and jitter,
only when the upstream provably did not process the request, so a retry never
duplicates a generation: it refused the connection or broke it before the
request was written in full (`UpstreamUnavailable`), or it answered 429, 503
or 529 (their `Retry-After` honoured). A 502 or 504 (a proxy's, whose backend
may be generating still), a timeout waiting for the answer, a connection lost
after the request went out, or a 200 whose body is broken is never sent to
that endpoint again. A provider whose circuit breaker is open is skipped (an
attempt with outcome `breaker_open`, nothing sent).
Once an event is out, the stream is committed to that endpoint: a later
failure ends it with that error, and nothing is spliced in from another
model. Every try is recorded as an `Attempt` on the request's context.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from server.errors import (
    BadUpstream,
    PermissionDenied,
    ProviderError,
    RateLimited,
    TokenwireError,
    UpstreamUnavailable,
)
from server.observability import tracing
from server.observability.tracing import CLIENT
from server.pipeline import convert, parameters, transforms
from server.pipeline.context import Attempt, RequestContext
from server.providers.base import Event, GenerationRequest, Usage
from server.routing import order
from server.routing.breaker import Breakers
from server.routing.catalog import Catalog, Endpoint
from server.routing.stats import Stats

RETRYABLE = (ProviderError, RateLimited)  # the upstream's failure: the next candidate is tried
RESENDABLE = (UpstreamUnavailable, RateLimited)  # ... and first the same one, again
BREAKER_OPEN = "breaker_open"  # the outcome of a provider skipped while its breaker is open


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 1  # further tries of the same endpoint after a RESENDABLE error
    base_delay: float = 0.25  # seconds before the first retry, doubling after
    max_delay: float = 4.0  # a longer Retry-After moves on to the next endpoint instead


@dataclass
class Opened:
    """A stream that has produced its first event on `endpoint`."""

    endpoint: Endpoint
    dropped: tuple[str, ...]
    generation: GenerationRequest
    events: AsyncIterator[Event]  # the first event again, then the rest
    started: float  # monotonic time the successful try began
    first_at: float  # monotonic time its first event arrived


class Router:
    def __init__(
        self,
        catalog: Catalog,
        stats: Stats | None = None,
        breakers: Breakers | None = None,
        policy: RetryPolicy | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.catalog = catalog
        self.stats = stats or Stats()
        self.breakers = breakers or Breakers()
        self.policy = policy or RetryPolicy()
        self._jitter = jitter

    def plan(self, ctx: RequestContext) -> list[Endpoint]:
        """The candidates in order; refuses bad requests before anything is sent."""
        request = ctx.request
        transforms.check(request.parameters.transforms)
        default = ctx.principal.default_model or self.catalog.default_model
        plan = order.candidates(
            request,
            self.catalog,
            self.stats,
            lambda e: parameters.missing(request, e.provider.supported),
            default,
        )
        allowed = ctx.principal.allowed_models
        if allowed is None:
            return plan
        if not any(e.model in allowed for e in plan):
            raise PermissionDenied(
                f"This API key may not use the model '{plan[0].model}'.", param="model"
            )
        return [e for e in plan if e.model in allowed]

    async def open(self, ctx: RequestContext, plan: list[Endpoint]) -> Opened:
        """Try the candidates until one produces its first event."""
        errors: list[TokenwireError] = []
        # converted once for every candidate (only the model differs), off the loop if large
        model = plan[0].upstream_model if plan else ""
        converted = await convert.converted(ctx.request, model, ctx.streamed)
        for endpoint in plan:
            opened = await self._try_endpoint(ctx, endpoint, converted, errors)
            if opened is not None:
                return opened
        raise exhausted(errors)

    async def _try_endpoint(
        self,
        ctx: RequestContext,
        e: Endpoint,
        converted: GenerationRequest,
        errors: list[TokenwireError],
    ) -> Opened | None:
        dropped = parameters.missing(ctx.request, e.provider.supported)
        generation = await self.generation(ctx, e, dropped, converted)
        for attempt in range(1 + self.policy.retries):
            if not self.breakers[e.name].allow(ctx.principal.organization_id):
                errors.append(ProviderError(f"Provider '{e.name}' is cooling down after failures."))
                # nothing was sent, but the skip is told (usage records, attempts metric)
                ctx.attempts.append(Attempt(e.name, e.model, BREAKER_OPEN, 0.0))
                return None
            try:
                with tracing.span(f"chat {e.upstream_model}", kind=CLIENT) as span:
                    if span is not None:  # tracing is on: one span per try of a provider
                        span.set_attributes(_attempt_attributes(e, attempt))
                    return await self._first(ctx, e, dropped, generation)
            except RETRYABLE as error:
                errors.append(error)
                delay = self._delay(error, attempt)
                if delay is None:
                    return None
                await asyncio.sleep(delay)  # backoff before retrying the same endpoint
        return None

    async def generation(
        self,
        ctx: RequestContext,
        e: Endpoint,
        dropped: tuple[str, ...],
        converted: GenerationRequest,
    ) -> GenerationRequest:
        """What `e` is asked: the request `converted` for its model, parameters and context."""
        if converted.model != e.upstream_model:
            converted = replace(converted, model=e.upstream_model)
        request = convert.without(converted, dropped)
        if e.context_length and "middle-out" in ctx.request.parameters.transforms:
            budget = e.context_length - (request.max_tokens or 0)
            messages = request.messages
            if len(messages) > convert.OFFLOAD_MESSAGES:  # as slow as converting them
                messages = await asyncio.to_thread(transforms.middle_out, messages, budget)
            else:
                messages = transforms.middle_out(messages, budget)
            request = replace(request, messages=messages)
        return request

    async def _first(
        self, ctx: RequestContext, e: Endpoint, dropped: tuple[str, ...], g: GenerationRequest
    ) -> Opened:
        started = time.monotonic()
        stream = aiter(e.provider.stream(g))
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            error = BadUpstream(f"Provider '{e.name}' ended the stream without any output.")
            self.failed(ctx, e, started, error)
            raise error from None
        except TokenwireError as error:
            await _close(stream)
            self.failed(ctx, e, started, error)
            raise
        except BaseException:
            self.breakers[e.name].release(ctx.principal.organization_id)  # cancelled: no verdict
            await _close(stream)
            raise
        return Opened(e, dropped, g, _prepend(first, stream), started, time.monotonic())

    def _delay(self, error: TokenwireError, attempt: int) -> float | None:
        """Seconds to wait before retrying the same endpoint, or None to move on."""
        if attempt >= self.policy.retries or not isinstance(error, RESENDABLE):
            return None
        if isinstance(error, RateLimited):
            wait = float(error.retry_after)
        elif "retry_after" in error.metadata:  # a 503 that says when
            wait = float(error.metadata["retry_after"])
        else:
            backoff = self.policy.base_delay * float(2**attempt)
            return min(self.policy.max_delay, backoff * (0.5 + self._jitter()))
        return wait if wait <= self.policy.max_delay else None

    # ------------------------------------------------------------ outcomes

    def failed(
        self, ctx: RequestContext, e: Endpoint, started: float, error: TokenwireError
    ) -> None:
        if isinstance(error, RETRYABLE):
            self.breakers[e.name].failure(ctx.principal.organization_id, error)
        else:
            self.breakers[e.name].success(ctx.principal.organization_id)  # the request's fault
        ctx.attempts.append(_attempt(e, "error", started, error=error.code or error.type))

    def succeeded(self, ctx: RequestContext, opened: Opened, usage: Usage | None) -> None:
        e, now = opened.endpoint, time.monotonic()
        self.breakers[e.name].success(ctx.principal.organization_id)
        tokens = usage.completion_tokens if usage else 0
        self.stats.observe(
            e.name, e.model, opened.first_at - opened.started, tokens, now - opened.first_at
        )
        ctx.attempts.append(_attempt(e, "ok", opened.started, usage=usage))

    def cancelled(self, ctx: RequestContext, opened: Opened, usage: Usage | None) -> None:
        # it was answering when the client left
        self.breakers[opened.endpoint.name].success(ctx.principal.organization_id)
        ctx.attempts.append(_attempt(opened.endpoint, "cancelled", opened.started, usage=usage))


def _attempt_attributes(e: Endpoint, attempt: int) -> dict[str, str | int]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": e.name,
        "gen_ai.request.model": e.upstream_model,
        "tokenwire.attempt": attempt,
    }


def _attempt(
    e: Endpoint,
    outcome: str,
    started: float,
    *,
    error: str | None = None,
    usage: Usage | None = None,
) -> Attempt:
    return Attempt(
        provider=e.name,
        model=e.model,
        outcome=outcome,
        latency_ms=(time.monotonic() - started) * 1000,
        error=error,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
    )


def exhausted(errors: list[TokenwireError]) -> TokenwireError:
    """One error for a request no candidate could serve, keeping the upstreams' messages."""
    if not errors:
        return ProviderError("No provider can serve this request.", code="no_provider")
    messages = {f"attempt_{i}": _described(e) for i, e in enumerate(errors)}
    last = errors[-1]
    if all(isinstance(e, RateLimited) for e in errors):
        wait = min(float(e.retry_after) for e in errors if isinstance(e, RateLimited))
        return RateLimited(last.message, retry_after=wait, metadata={**last.metadata, **messages})
    if {type(e) for e in errors} == {type(last)}:
        last.metadata.update(messages)  # one kind of failure: the client sees it as it was
        return last
    return ProviderError(
        f"No provider could serve this request; last error: {errors[-1].message}",
        code="no_provider",
        metadata=messages,
    )


def _described(error: TokenwireError) -> str:
    """One attempt's failure for the final error's metadata, the upstream's words kept."""
    text = f"{type(error).__name__}: {error.message}"
    upstream = error.metadata.get("upstream_message")
    return f"{text} (upstream said: {upstream})" if upstream else text


async def _prepend(first: Event, rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await _close(rest)  # closing early stops the provider at once


async def _close(stream: AsyncIterator[Event]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
