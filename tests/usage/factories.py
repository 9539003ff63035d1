"""Usage records and request contexts for tests, with only what a test cares about spelled out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from server.pipeline.context import Attempt, CallInfo, Principal, RequestContext, UsageRecord
from tokenwire.chat.v1 import chat_pb2

RECORD = UsageRecord(
    request_id="req_1",
    created=1_000_000.0,
    key_id=None,
    organization_id=None,
    session_id=None,
    user=None,
    model_requested="fake-echo",
    model="fake-echo",
    provider="fake",
    attempts=(Attempt("fake", "fake-echo", "ok", 12.5, prompt_tokens=3, completion_tokens=4),),
    prompt_tokens=3,
    completion_tokens=4,
    cached_tokens=0,
    estimated=False,
    cost_usd=0.0,
    latency_ms=20.0,
    ttft_ms=5.0,
    status="ok",
    http_status=200,
    streamed=False,
    cancelled=False,
)


def record(**changes: Any) -> UsageRecord:
    return replace(RECORD, **changes)


def context(
    metadata: dict[str, str] | None = None,
    *,
    peer: str = "10.0.0.1",
    principal: Principal | None = None,
    **request: Any,
) -> RequestContext:
    call = CallInfo("req_1", dict(metadata or {}), peer)
    ctx = RequestContext(
        call, chat_pb2.CreateChatCompletionRequest(model="fake-echo", **request), streamed=False
    )
    if principal is not None:
        ctx.principal = principal
    return ctx
