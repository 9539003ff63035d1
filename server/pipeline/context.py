"""What travels with one chat request through the pipeline's stages (their order and the
whole request path: ARCHITECTURE.md).

A `Stage` sees the `RequestContext` before routing (`before`: authenticate,
check limits, rewrite the request) and the finished `UsageRecord` after
(`after`: charge budgets, store memories). Stages know nothing of gRPC or
HTTP; what they want the client to see as headers goes in `ctx.headers`
(sent as gRPC metadata, turned into HTTP headers by the gateway).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from server.pipeline.finishers import Finisher
from tokenwire.chat.v1 import chat_pb2


@dataclass(slots=True)
class CallInfo:
    """What the transport tells about a call: its metadata and the client's address
    (`server.rpc.boundary` makes it, once per call).

    Read-only once made; not frozen, as a frozen `__init__` costs an `object.__setattr__`
    per field on every call (and `headers` is a mutable dict anyway)."""

    request_id: str
    metadata: dict[str, str]
    peer: str = ""
    # Response metadata for the client (rate-limit facts, memory ids…); the gateway
    # turns it into HTTP headers. Stages fill it through `RequestContext.headers`.
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, once authenticated (None fields: not restricted / not known)."""

    key_id: str | None = None
    organization_id: str | None = None
    default_model: str | None = None
    allowed_models: frozenset[str] | None = None
    allowed_agents: frozenset[str] | None = None  # `model: "agent/<name>"` (server/agents)


# A caller nothing is known of: one shared value, not a new one per request.
ANONYMOUS = Principal()


@dataclass(slots=True)
class Attempt:
    """One try of one provider for one request; final once made, as its `UsageRecord` is."""

    provider: str
    model: str
    outcome: str  # ok, error, cancelled, breaker_open (skipped: nothing was sent)
    latency_ms: float
    error: str | None = None  # the error code when outcome is error
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class UsageRecord:
    """Exactly one per request, whatever happened to it; final once made (stages only read it).

    Not frozen: a frozen `__init__` sets each of its 24 fields through `object.__setattr__`."""

    request_id: str
    created: float  # unix seconds
    key_id: str | None
    organization_id: str | None
    session_id: str | None
    user: str | None
    model_requested: str
    model: str | None  # the model that served, if any did
    provider: str | None
    attempts: tuple[Attempt, ...]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    estimated: bool
    cost_usd: float
    latency_ms: float
    ttft_ms: float | None
    status: str  # "ok" or the error code
    http_status: int
    streamed: bool
    cancelled: bool
    template: str | None = None
    template_version: int | None = None
    memory_ids: tuple[str, ...] = ()
    trace_id: str | None = None  # the request's `trace.trace_id`
    trace: str | None = None  # its whole `trace`, as JSON text (server.usage.trace)


@dataclass
class RequestContext:
    """Mutable state of one request as the stages and the router see it."""

    call: CallInfo
    request: chat_pb2.CreateChatCompletionRequest
    streamed: bool
    principal: Principal = ANONYMOUS
    attempts: list[Attempt] = field(default_factory=list)
    template: str | None = None
    template_version: int | None = None
    memory_ids: list[str] = field(default_factory=list)
    # What plugins do to the answer once complete (server.pipeline.finishers).
    finishers: list[Finisher] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    created: float = field(default_factory=time.time)
    # The model the client asked for ("auto", "x:online", "" under a template), taken
    # before any stage rewrites `request.model` to the one that will serve.
    model_requested: str = field(init=False)

    def __post_init__(self) -> None:
        self.model_requested = self.request.model

    @property
    def headers(self) -> dict[str, str]:
        """Response metadata for the client (the call's, shared with the servicer)."""
        return self.call.headers

    @property
    def session_id(self) -> str | None:
        """The body's `session_id`, else the `x-session-id` header (the body wins)."""
        if self.request.HasField("session_id"):
            return self.request.session_id
        return self.call.metadata.get("x-session-id")


class Stage(Protocol):
    async def before(self, ctx: RequestContext) -> None:
        """Check or rewrite the request; raise a `TokenwireError` to refuse it."""
        ...

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        """Act on the finished request (its usage record is final)."""
        ...


class UsageSink(Protocol):
    async def record(self, record: UsageRecord) -> None:
        """Keep one finished request's usage."""
        ...


class InProcessSink:
    """Keeps usage records in a list (tests, and the default until storage is configured)."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    async def record(self, record: UsageRecord) -> None:
        self.records.append(record)


class Authenticator(Protocol):
    async def authenticate(self, call: CallInfo) -> Principal:
        """Who is calling; raises `Unauthenticated`/`PermissionDenied` to refuse."""
        ...


class OpenAuthenticator:
    """No keys configured (local use): everyone may call; the tenancy header picks the org."""

    async def authenticate(self, call: CallInfo) -> Principal:
        organization = call.metadata.get("organization_id")
        return Principal(organization_id=organization) if organization else ANONYMOUS
