"""Every service and pipeline stage tokenwire serves, built from the config in one place.

    auth ▶ tags ▶ limits ▶ budget ▶ template ▶ memory   (stages, in this order, before routing)

Authentication: with API keys in the store every caller needs one; with none,
a service bound to loopback (or told `allow_open`) runs open for local use,
the `organization_id` header picking the tenancy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from server.chat import ChatPipeline, ChatServicer
from server.config import Config
from server.context import Stage, UsageSink
from server.keys import admin as admin_service
from server.keys import migrations as key_migrations
from server.keys.auth import AdminCredential
from server.keys.gate import KeysOrOpen
from server.keys.ledger import KeyLedger
from server.keys.quotas import KeyQuotas
from server.keys.stage import AuthStage
from server.keys.store import Issued, KeyStore
from server.limits.base import Limiter, Rate
from server.limits.build import build_limiter
from server.limits.stage import LimitsConfig, LimitStage
from server.memory import service as memory_service
from server.memory import store as memory_store
from server.memory.stage import MemoryStage, RecallConfig
from server.models import ModelServicer
from server.router import Router
from server.storage.database import Database
from server.templates import service as template_service
from server.templates import store as template_store
from server.templates.stage import TemplateStage
from server.usage import migrations as usage_migrations
from server.usage import service as usage_service
from server.usage.budget import BudgetStage
from server.usage.journal import Journal
from server.usage.store import UsageStore
from server.usage.tags import TagStage
from tokenwire.admin.v1 import admin_pb2_grpc
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, models_pb2, models_pb2_grpc
from tokenwire.memory.v1 import memory_pb2_grpc
from tokenwire.templates.v1 import templates_pb2_grpc
from tokenwire.usage.v1 import usage_pb2_grpc

SERVICES = (
    chat_pb2.DESCRIPTOR.services_by_name["ChatService"],
    models_pb2.DESCRIPTOR.services_by_name["ModelService"],
    template_service.DESCRIPTOR,
    memory_service.DESCRIPTOR,
    admin_service.DESCRIPTOR,
    usage_service.DESCRIPTOR,
)

MIGRATIONS = (
    *key_migrations.MIGRATIONS,
    *usage_migrations.MIGRATIONS,
    *template_store.MIGRATIONS,
    *memory_store.MIGRATIONS,
)

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class Mounted(NamedTuple):
    """A servicer and the generated function that adds it to a (real or capturing) server."""

    add: Callable[[Any, Any], None]
    servicer: Any


@dataclass(frozen=True, slots=True)
class Parts:
    mounted: tuple[Mounted, ...]
    stages: tuple[Stage, ...]
    usage: UsageSink
    limiter: Limiter
    keys: KeyStore
    store: UsageStore  # where usage lands unless a test passed its own sink


class _ObservedKeys(KeyStore):
    """The key store, telling the authenticator the moment this replica makes a key."""

    on_create: Callable[[], None] = staticmethod(lambda: None)

    async def create(self, spec: Any, *, create_organization: bool = False) -> Issued:
        issued = await super().create(spec, create_organization=create_organization)
        self.on_create()
        return issued


class StartupRefused(Exception):
    """The configuration would serve unsafely; the message says how to proceed."""


async def check_can_start(config: Config, keys: KeyStore) -> None:
    """Refuse to serve a non-loopback address without keys unless told to run open."""
    if config.host in LOOPBACK or config.allow_open or await keys.has_keys():
        return
    raise StartupRefused(
        f"refusing to serve {config.host} without API keys. Create one with "
        "`tokenwire keys create`, or pass --allow-open to run without authentication."
    )


def build(
    config: Config,
    db: Database,
    router: Router,
    sink: UsageSink | None = None,
    journal: Journal | None = None,
) -> Parts:
    """Everything served; usage records go to `sink` (tests) or the database, through
    `journal` when given."""
    keys = _ObservedKeys(db)
    open_allowed = config.host in LOOPBACK or config.allow_open
    authenticator = KeysOrOpen(keys, open_allowed)
    keys.on_create = authenticator.keyed
    admin = AdminCredential(config.admin_token)
    usage = UsageStore(db, journal)
    sink = sink or usage
    limiter = build_limiter(config.redis_url, fail_open=config.limits_fail_open)
    templates, memories = template_store.TemplateStore(db), memory_store.MemoryStore(db)
    stages: tuple[Stage, ...] = (
        AuthStage(authenticator),
        TagStage(),
        LimitStage(limiter, KeyQuotas(db), _limits(config)),
        BudgetStage(KeyLedger(db)),
        TemplateStage(templates),
        MemoryStage(memories, _recall(config)),
    )
    chat = ChatServicer(ChatPipeline(router, sink, stages))
    mounted = (
        Mounted(chat_pb2_grpc.add_ChatServiceServicer_to_server, chat),
        Mounted(models_pb2_grpc.add_ModelServiceServicer_to_server, ModelServicer(router.catalog)),
        Mounted(
            templates_pb2_grpc.add_TemplateServiceServicer_to_server,
            template_service.TemplateServicer(templates, authenticator),
        ),
        Mounted(
            memory_pb2_grpc.add_MemoryServiceServicer_to_server,
            memory_service.MemoryServicer(memories, authenticator),
        ),
        Mounted(
            admin_pb2_grpc.add_AdminServiceServicer_to_server,
            admin_service.AdminServicer(keys, admin),
        ),
        Mounted(
            usage_pb2_grpc.add_UsageServiceServicer_to_server,
            usage_service.UsageServicer(usage, admin, authenticator, keys.organizations),
        ),
    )
    return Parts(mounted, stages, sink, limiter, keys, usage)


def _limits(config: Config) -> LimitsConfig:
    """Keyless callers are limited per IP when the service is open beyond loopback."""
    public = config.host not in LOOPBACK and config.anonymous_ip_requests > 0
    anonymous = Rate(requests=config.anonymous_ip_requests, window=config.anonymous_ip_window)
    return LimitsConfig(anonymous_ip=anonymous if public else None)


def _recall(config: Config) -> RecallConfig:
    return RecallConfig(
        budget_tokens=config.memory_budget_tokens,
        candidates=config.memory_candidates,
        recent_messages=config.memory_recent_messages,
    )
