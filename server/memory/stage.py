"""The pipeline stage recalling organization memory into a request, and storing to it.

Before routing, for a request whose principal names an organization, the
memories most relevant to the recent user text (the last `recent_messages`
user messages) are recalled from the organization's org-wide memories and
those narrowed to the request's `user` or session, as many as fit
`budget_tokens`, and put first as one system message (see `recall`). Their
ids go to the usage record and to the `x-tokenwire-memory-ids` response
header (comma-separated; absent when nothing was recalled).

Turning memory off for one request, either of:
- the body's `metadata` has `"memory": "off"` (works from any OpenAI SDK);
- the `x-tokenwire-memory: off` header / gRPC metadata.
Off means no recall and no automatic storage for that request.

After a successful completion, when the organization's `auto_store` setting
is on, the request's last user message is stored as a memory (narrowed to
the request's `user` if it names one), unless the same text is already kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.memory import recall
from server.memory.model import Scope
from server.memory.store import MAX_CONTENT, MemoryStore
from server.pipeline.context import RequestContext, UsageRecord
from tokenwire.chat.v1 import message_pb2

OFF_METADATA_KEY = "memory"
OFF_HEADER = "x-tokenwire-memory"
IDS_HEADER = "x-tokenwire-memory-ids"


@dataclass(frozen=True, slots=True)
class RecallConfig:
    # Most tokens (~4 characters each) the memory system message may take; 0 turns recall off.
    budget_tokens: int = 512
    # How many best matches are considered before the budget is applied.
    candidates: int = 8
    # How many of the latest user messages make the recall query.
    recent_messages: int = 2


def memory_off(ctx: RequestContext) -> bool:
    """Whether the request turned memory off (body metadata or header)."""
    by_body = ctx.request.metadata.get(OFF_METADATA_KEY, "")
    by_header = ctx.call.metadata.get(OFF_HEADER, "")
    return "off" in (by_body.strip().lower(), by_header.strip().lower())


class MemoryStage:
    span_name = "memory recall"  # traced: its `before` runs in a span of this name

    def __init__(self, store: MemoryStore, config: RecallConfig | None = None) -> None:
        self._store = store
        self._config = config or RecallConfig()

    async def before(self, ctx: RequestContext) -> None:
        organization = ctx.principal.organization_id
        if not organization or memory_off(ctx) or self._config.budget_tokens <= 0:
            return
        text = recall.query(ctx.request.messages, self._config.recent_messages)
        if not text:
            return
        scope = Scope(organization, _user(ctx), ctx.session_id)
        found = await self._store.search(scope, text, self._config.candidates)
        chosen = recall.within_budget(found, self._config.budget_tokens)
        if not chosen:
            return
        system = message_pb2.ChatMessage(
            role=message_pb2.ROLE_SYSTEM, content_text=recall.block(chosen)
        )
        ctx.request.messages.insert(0, system)
        ctx.memory_ids = [m.id for m in chosen]
        ctx.headers[IDS_HEADER] = ",".join(ctx.memory_ids)

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        organization = ctx.principal.organization_id
        if not organization or record.status != "ok" or record.cancelled or memory_off(ctx):
            return
        texts = recall.user_texts(ctx.request.messages)
        if not texts:
            return
        content, user = texts[-1].strip()[:MAX_CONTENT], _user(ctx)
        if not (await self._store.settings(organization)).auto_store:
            return
        if not await self._store.holds(organization, content, user):
            await self._store.add(organization, content, user=user, source="auto")


def _user(ctx: RequestContext) -> str | None:
    return ctx.request.user if ctx.request.HasField("user") and ctx.request.user else None
