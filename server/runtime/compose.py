"""The one composition root: every provider, the router, the pipeline's stages and every
service, built from the config here and nowhere else (`server.runtime.app` runs them).

Authentication: with API keys in the store every caller needs one; with none,
a service bound to loopback (or told `allow_open`) runs open for local use,
the `organization_id` header picking the tenancy.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from server.agents import service as agent_service
from server.agents import store as agent_store
from server.agents.dispatch import AgentDispatch
from server.agents.sessions import service as session_service
from server.agents.sessions import store as session_store
from server.agents.sessions.replay import Replayer
from server.agents.tools.toolbox import Toolbox, ToolConfig
from server.errors import TokenwireError
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
from server.observability import health, metrics, tracing
from server.observability.stage import Observers, ObservingStage
from server.pipeline.chat import ChatPipeline
from server.pipeline.context import Stage, UsageSink
from server.plugins import auto_router
from server.plugins.stage import PluginStage
from server.providers.base import ModelCard, Provider
from server.routing.breaker import BreakerConfig, Breakers
from server.routing.catalog import Catalog, Endpoint
from server.routing.router import RetryPolicy, Router
from server.rpc.access import Access
from server.rpc.chat_service import ChatServicer
from server.rpc.model_service import ModelServicer
from server.runtime.config import Config
from server.runtime.upstreams import Upstreams
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
from tokenwire.agents.v1 import agents_pb2_grpc
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, models_pb2, models_pb2_grpc
from tokenwire.memory.v1 import memory_pb2_grpc
from tokenwire.sessions.v1 import sessions_pb2_grpc
from tokenwire.templates.v1 import templates_pb2_grpc
from tokenwire.usage.v1 import usage_pb2_grpc

SERVICES = (
    chat_pb2.DESCRIPTOR.services_by_name["ChatService"],
    models_pb2.DESCRIPTOR.services_by_name["ModelService"],
    template_service.DESCRIPTOR,
    memory_service.DESCRIPTOR,
    admin_service.DESCRIPTOR,
    usage_service.DESCRIPTOR,
    agent_service.DESCRIPTOR,
    session_service.DESCRIPTOR,
)

MIGRATIONS = (
    *key_migrations.MIGRATIONS,
    *usage_migrations.MIGRATIONS,
    *template_store.MIGRATIONS,
    *memory_store.MIGRATIONS,
    *agent_store.MIGRATIONS,
    *session_store.MIGRATIONS,
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
    plugins: PluginStage  # closed at stop: it holds the plugins' HTTP sessions
    observed: Observed
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()  # at stop, before the database


@dataclass(frozen=True, slots=True)
class Observed:
    """What observability adds: the metrics recorded into (None when off), the GET routes
    the gateway answers for the process, and what to close at stop."""

    metrics: metrics.Recorder | None
    readiness: health.Readiness
    routes: Mapping[str, Callable[[], Awaitable[health.Answer]]]
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()


def build_observed(config: Config, db: Database, router: Router) -> Observed:
    """Metrics (unless off), liveness, and readiness over the database, Redis and models."""
    timeout = config.readiness_timeout
    checks = [health.Check("database", health.database_probe(db))]
    closers: list[Callable[[], Awaitable[None]]] = []
    if config.redis_url:
        probe, close = health.redis_probe(config.redis_url, timeout)
        checks.append(health.Check("redis", probe))
        closers.append(close)
    checks.append(health.Check("models", health.models_probe(router)))
    if config.otlp_endpoint:
        tracing.install(
            tracing.TracingConfig(
                config.otlp_endpoint,
                export_delay=config.otlp_export_delay,
                capture_content=config.otlp_capture_content,
            )
        )
        closers.append(_stop_tracing)
    readiness = health.Readiness(checks, timeout)
    routes: dict[str, Callable[[], Awaitable[health.Answer]]] = {
        "/healthz": health.alive,
        "/readyz": readiness.answer,
    }
    if not config.metrics:
        return Observed(None, readiness, routes, tuple(closers))
    created, exposition = metrics.create(config.metrics_dir)
    recorded = metrics.Recorder(created)

    async def scrape() -> health.Answer:
        recorded.flush()  # this process's latest requests, gathered since the last flush
        return health.Answer(200, exposition.render(), metrics.CONTENT_TYPE)

    routes["/metrics"] = scrape
    return Observed(recorded, readiness, routes, tuple(closers))


async def _stop_tracing() -> None:
    await asyncio.to_thread(tracing.shutdown)  # sends what is pending: blocking


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
    access = Access(authenticator, AdminCredential(config.admin_token))
    usage = UsageStore(db, journal)
    sink = sink or usage
    limiter = build_limiter(config.redis_url, fail_open=config.limits_fail_open)
    templates, memories = template_store.TemplateStore(db), memory_store.MemoryStore(db)
    plugins = PluginStage(config.plugins, router.catalog, router.stats)
    observed = build_observed(config, db, router)
    # The stages before routing, in order (ARCHITECTURE.md draws the whole request path).
    stages: tuple[Stage, ...] = (
        _observing_stage(config, observed.metrics, router, usage),
        AuthStage(access),
        TagStage(),
        LimitStage(limiter, KeyQuotas(db), _limits(config)),
        BudgetStage(KeyLedger(db)),
        TemplateStage(templates),
        MemoryStage(memories, _recall(config)),
        plugins,
    )
    pipeline = ChatPipeline(router, sink, stages)
    agents, sessions = agent_store.AgentStore(db), session_store.SessionStore(db)
    toolbox = Toolbox(_tool_config(config), memories)
    dispatch = AgentDispatch(pipeline, agents, toolbox, sessions, access, observed.metrics)
    chat = ChatServicer(dispatch)
    mounted = (
        Mounted(chat_pb2_grpc.add_ChatServiceServicer_to_server, chat),
        Mounted(models_pb2_grpc.add_ModelServiceServicer_to_server, ModelServicer(router.catalog)),
        Mounted(
            templates_pb2_grpc.add_TemplateServiceServicer_to_server,
            template_service.TemplateServicer(templates, access),
        ),
        Mounted(
            memory_pb2_grpc.add_MemoryServiceServicer_to_server,
            memory_service.MemoryServicer(memories, access),
        ),
        Mounted(
            admin_pb2_grpc.add_AdminServiceServicer_to_server,
            admin_service.AdminServicer(keys, access),
        ),
        Mounted(
            usage_pb2_grpc.add_UsageServiceServicer_to_server,
            usage_service.UsageServicer(usage, access, keys.organizations),
        ),
        Mounted(
            agents_pb2_grpc.add_AgentServiceServicer_to_server,
            agent_service.AgentServicer(agents, access),
        ),
        Mounted(
            sessions_pb2_grpc.add_SessionServiceServicer_to_server,
            session_service.SessionServicer(sessions, Replayer(pipeline, sessions), access),
        ),
    )
    closers = (toolbox.aclose, sessions.aclose)
    return Parts(mounted, stages, sink, limiter, keys, usage, plugins, observed, closers)


def _tool_config(config: Config) -> ToolConfig:
    """What agents' tools may do; the variables they may name are read here, once."""
    return ToolConfig(
        mcp_commands=frozenset(config.mcp_commands),
        environ={name: os.environ[name] for name in config.mcp_env if name in os.environ},
        allow_private=config.agent_private_hosts,
    )


def _observing_stage(
    config: Config, recorded: metrics.Recorder | None, router: Router, usage: UsageStore
) -> Stage:
    """First of the stages, so that it sees every request that reaches them."""
    catalog, breakers = router.catalog, router.breakers

    def known(model: str) -> bool:
        if model == auto_router.AUTO:  # no model of the catalog's, but one series, bounded
            return True
        try:
            catalog.canonical(model)
        except TokenwireError:
            return False
        return True

    def breaker_open(provider: str) -> bool:
        return breakers[provider].state == "open"

    observers = Observers(recorded, config.access_log, known, breaker_open, usage.backlog)
    return ObservingStage(observers)


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


@dataclass(frozen=True, slots=True)
class Routing:
    router: Router
    providers: tuple[Provider, ...]  # each once: the service closes them at stop


async def build_routing(
    config: Config,
    providers: Sequence[Provider] | None = None,
    endpoints: Sequence[Endpoint] | None = None,
) -> Routing:
    """The providers and router the config declares; tests may pass embedded `providers` or
    whole `endpoints` instead."""
    embedded = list(providers) if providers is not None else await embedded_providers(config)
    remote = upstream_providers(config.upstreams)
    if endpoints is None:
        now = int(time.time())
        endpoints = [e for p in embedded for e in embedded_endpoints(p, now)]
        endpoints += upstream_endpoints(config.upstreams, remote, now)
    owned = {id(p): p for p in [*embedded, *remote.values()]}
    return Routing(build_router(config, endpoints), tuple(owned.values()))


async def embedded_providers(config: Config) -> list[Provider]:
    """The embedded provider the config names (none when `provider = "none"`)."""
    if config.provider == "none":
        return []
    if config.provider == "fake":
        from server.providers.fake import FakeProvider

        return [FakeProvider()]
    if config.provider == "local":
        from server.providers.llama import models as llama_models
        from server.providers.llama.provider import LocalConfig, LocalProvider

        local = LocalConfig(
            models=llama_models.choose(config.local_models, config.model_path, config.n_ctx),
            max_resident=config.max_resident_models,
            n_threads=config.n_threads,
        )
        try:
            return [await LocalProvider.load(local)]
        except llama_models.ModelFileMissing as e:  # said once, before serving anything
            raise StartupRefused(str(e)) from None
    raise ValueError(f"unknown provider {config.provider!r}: use local, fake or none")


def build_router(config: Config, endpoints: Sequence[Endpoint]) -> Router:
    """The router over `endpoints`, with the config's breakers and retry policy."""
    breakers = Breakers(
        BreakerConfig(
            window=config.breaker_window,
            min_requests=config.breaker_min_requests,
            failure_rate=config.breaker_failure_rate,
            cooldown=config.breaker_cooldown,
            organizations=config.breaker_organizations,
        )
    )
    policy = RetryPolicy(retries=config.retries, base_delay=config.retry_base_delay)
    return Router(Catalog(endpoints, config.default_model), breakers=breakers, policy=policy)


def upstream_providers(upstreams: Upstreams) -> dict[str, Provider]:
    """One provider (with one pooled HTTP client) per configured upstream."""
    from server.providers.http.anthropic import AnthropicProvider
    from server.providers.http.openai import OpenAICompatProvider

    built: dict[str, Provider] = {}
    for spec in upstreams.providers:
        cards = tuple(
            ModelCard(m.upstream, owned_by=spec.config.name)
            for m in upstreams.models
            if m.provider == spec.config.name
        )
        config = replace(spec.config, models=cards)
        cls = AnthropicProvider if spec.kind == "anthropic" else OpenAICompatProvider
        built[spec.config.name] = cls(config)
    return built


def upstream_endpoints(
    upstreams: Upstreams, providers: Mapping[str, Provider], created: int
) -> list[Endpoint]:
    """The catalog's endpoints for the configured models."""
    policy = {s.config.name: s for s in upstreams.providers}
    return [
        Endpoint(
            model=m.id,
            provider=providers[m.provider],
            upstream_model=m.upstream,
            context_length=m.context_length,
            prompt_price=m.prompt_price,
            completion_price=m.completion_price,
            cached_price=m.cached_price,
            cache_write_price=m.cache_write_price,
            quantization=m.quantization,
            data_collection=m.data_collection or policy[m.provider].data_collection,
            zdr=m.zdr if m.zdr is not None else policy[m.provider].zdr,
            created=created,
            owned_by=m.provider,
            aliases=m.aliases,
        )
        for m in upstreams.models
    ]


def embedded_endpoints(provider: Provider, created: int) -> list[Endpoint]:
    """Endpoints of an in-process provider (local model, fake): it keeps no data."""
    return [
        Endpoint(
            model=card.id,
            provider=provider,
            upstream_model=card.id,
            context_length=card.context_length,
            data_collection="deny",
            zdr=True,
            created=card.created or created,
            owned_by=card.owned_by,
            aliases=card.aliases,
        )
        for card in provider.models()
    ]
