"""Helpers shared by the template and memory tests: gRPC on port 0, contexts, a whole stack.

`start_stack` runs tokenwire as `server.runtime.app.start` wires it (open mode: the
`organization_id` header picks the organization) on a given database, with a
fake provider, on ports the OS picks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import openai

from server.memory.store import MIGRATIONS as MEMORY_MIGRATIONS
from server.memory.store import MemoryStore
from server.pipeline.context import (
    CallInfo,
    InProcessSink,
    Principal,
    RequestContext,
    UsageRecord,
)
from server.providers.fake import FakeConfig, FakeProvider
from server.rpc.boundary import Boundary, Calls
from server.runtime import app
from server.runtime.config import Config
from server.storage.database import Database
from server.templates.store import MIGRATIONS as TEMPLATE_MIGRATIONS
from server.templates.store import TemplateStore
from tokenwire.chat.v1 import chat_pb2, message_pb2

MIGRATIONS = (*TEMPLATE_MIGRATIONS, *MEMORY_MIGRATIONS)


def org(name: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata naming an organization (open mode)."""
    return (("organization_id", name),)


def user_message(text: str) -> message_pb2.ChatMessage:
    return message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text=text)


def system_message(text: str) -> message_pb2.ChatMessage:
    return message_pb2.ChatMessage(role=message_pb2.ROLE_SYSTEM, content_text=text)


def context(
    request: chat_pb2.CreateChatCompletionRequest,
    organization: str | None = "acme",
    metadata: dict[str, str] | None = None,
) -> RequestContext:
    call = CallInfo("req_test", dict(metadata or {}))
    return RequestContext(call, request, streamed=False, principal=Principal(None, organization))


def record(ctx: RequestContext, status: str = "ok") -> UsageRecord:
    """A finished request's usage record, as the pipeline would make it."""
    return UsageRecord(
        request_id=ctx.call.request_id,
        created=time.time(),
        key_id=None,
        organization_id=ctx.principal.organization_id,
        session_id=ctx.session_id,
        user=None,
        model_requested=ctx.request.model,
        model="fake-echo",
        provider="fake",
        attempts=(),
        prompt_tokens=1,
        completion_tokens=1,
        cached_tokens=0,
        estimated=True,
        cost_usd=0.0,
        latency_ms=1.0,
        ttft_ms=1.0,
        status=status,
        http_status=200 if status == "ok" else 500,
        streamed=False,
        cancelled=False,
    )


async def grpc_server(registrations: Sequence[tuple[Any, Any]]) -> tuple[grpc.aio.Server, str]:
    """A real grpc.aio server on a port the OS picks, serving the given servicers."""
    server = grpc.aio.server()
    wrapped = Boundary(server, Calls())  # as tokenwire serves them
    for add, servicer in registrations:
        add(servicer, wrapped)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@dataclass
class Stack:
    http_port: int
    fake: FakeProvider
    usage: InProcessSink
    templates: TemplateStore
    memories: MemoryStore
    stop: Any
    settle: Any  # waits until finished requests are accounted (usage, auto-stored memories)

    def client(self, organization: str | None = None, **headers: str) -> openai.AsyncOpenAI:
        """The official SDK against the stack, sending `organization_id` when given."""
        if organization is not None:
            headers["organization_id"] = organization
        return openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{self.http_port}/v1",
            api_key="unused",
            max_retries=0,
            default_headers=headers,
        )

    def seen(self) -> list[tuple[str, str]]:
        """(role, text) of each message the provider received last."""
        return [(m.role, m.text()) for m in self.fake.config.seen[-1].messages]


async def start_stack(database: Database, recall_budget: int | None = None) -> Stack:
    """tokenwire as `server.runtime.app.start` wires it, on `database`, with a fake provider."""
    settings: dict[str, Any] = {}
    if recall_budget is not None:
        settings["memory_budget_tokens"] = recall_budget
    config = Config(host="127.0.0.1", http_port=0, grpc_port=0, grace=1.0, retries=0, **settings)
    fake, usage = FakeProvider(FakeConfig()), InProcessSink()
    service = await app.start(config, [fake], usage=usage, db=database)
    templates, memories = TemplateStore(database), MemoryStore(database)
    return Stack(service.http_port, fake, usage, templates, memories, service.stop, service.settle)
