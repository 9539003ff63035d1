"""`LimitStage`: which scopes a request counts against, checked before and charged after.

    authenticated    the key's and its organization's limits (from a `QuotaSource`)
    anonymous        the client IP's limit (`LimitsConfig.anonymous_ip`, 60 per hour)
    everyone         optionally a per-IP limit too (`LimitsConfig.every_ip`)

Before the call: count the request, put OpenAI's `x-ratelimit-*` headers in
`ctx.headers` (gRPC metadata, HTTP headers at the gateway) and refuse with
`RateLimited` (429, `retry_after`) when a scope is exhausted. After it: add
the request's tokens to the scopes that limit tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from server.errors import RateLimited
from server.limits.base import Check, Limiter, Rate, ScopeState
from server.limits.headers import duration, headers
from server.pipeline.context import Principal, RequestContext, UsageRecord

log = logging.getLogger("tokenwire.limits")


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    # Requests from callers without an API key, per client IP (AgentOS: 60 per hour).
    anonymous_ip: Rate | None = field(default_factory=lambda: Rate(requests=60, window=3600))
    # A limit per client IP for every caller, keyed or not; None means none.
    every_ip: Rate | None = None


class QuotaSource(Protocol):
    async def checks(self, principal: Principal) -> Sequence[Check]:
        """The key's and organization's limits for an authenticated caller."""
        ...


class NoQuotas:
    """No per-key or per-organization limits (no key store configured)."""

    async def checks(self, principal: Principal) -> Sequence[Check]:
        return ()


class LimitStage:
    def __init__(
        self,
        limiter: Limiter,
        quotas: QuotaSource | None = None,
        config: LimitsConfig | None = None,
    ) -> None:
        self._limiter = limiter
        self._quotas = quotas or NoQuotas()
        self._config = config or LimitsConfig()

    async def before(self, ctx: RequestContext) -> None:
        checks = await self.checks(ctx)
        if not checks:
            return
        verdict = await self._limiter.acquire(checks)
        ctx.headers.update(headers(verdict))
        if not verdict.allowed:
            raise RateLimited(_message(verdict.blocked[0]), retry_after=verdict.retry_after)

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        tokens = record.prompt_tokens + record.completion_tokens
        if tokens <= 0:
            return
        try:
            checks = [c for c in await self.checks(ctx) if c.rate.tokens is not None]
            if checks:
                await self._limiter.spend(checks, tokens)
        except Exception:
            log.exception("could not count the tokens of %s", ctx.call.request_id)

    async def checks(self, ctx: RequestContext) -> list[Check]:
        principal, ip = ctx.principal, ctx.call.peer or "unknown"
        checks = [c for c in await self._quotas.checks(principal) if not c.rate.unlimited]
        anonymous = self._config.anonymous_ip
        if principal.key_id is None and anonymous is not None:
            checks.append(Check(f"ip:{ip}", "your IP address", anonymous))
        if self._config.every_ip is not None:
            checks.append(Check(f"ip-all:{ip}", "your IP address", self._config.every_ip))
        return checks


def _message(state: ScopeState) -> str:
    rate = state.check.rate
    exhausted = rate.requests is not None and state.requests >= rate.requests
    kind, limit = ("requests", rate.requests) if exhausted else ("tokens", rate.tokens)
    return (
        f"Rate limit reached for {kind} on {state.check.label}: {limit} per "
        f"{duration(rate.window)}. Try again in {duration(state.reset)}."
    )
