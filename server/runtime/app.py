"""tokenwire's lifecycle: start, serve, stop (what runs is built by `server.runtime.compose`).

`start()` opens storage, has everything built, serves it over gRPC (with health
and reflection) and through the gateway sharing its process, and returns a
`Service`; `Service.stop()`
marks health NOT_SERVING, stops taking new work and lets in-flight calls
finish within the grace period; those still running then end with
UNAVAILABLE / an SSE error event saying the server is shutting down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.app import Gateway
from gateway.config import GatewayConfig
from gateway.in_process import InProcessInvoker, captured
from gateway.invoker import ChannelInvoker, Invoker
from gateway.local import LocalRoute
from gateway.protocol import HeadLimits, limited_protocol
from server.errors import SHUTTING_DOWN
from server.observability import health as observability_health
from server.observability import http_metrics
from server.pipeline.context import UsageSink
from server.providers.base import Provider
from server.routing.catalog import Endpoint
from server.routing.router import Router
from server.rpc import boundary
from server.runtime import compose
from server.runtime.config import Config
from server.storage.database import Database, open_database
from server.storage.migrations import migrate
from server.usage.journal import open_journal

log = logging.getLogger("tokenwire")

# Seconds between the end of the grace period, when calls still running are told the
# server is shutting down, and grpc cutting off any that have not ended by then.
CUT_OFF = 1.0

SERVICES = compose.SERVICES


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: `Service` owns the lifecycle."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Service:
    """A running tokenwire: gRPC server (optional), gateway, providers."""

    grpc_port: int | None
    http_port: int
    grpc_server: grpc.aio.Server | None
    health: Any  # grpc_health's aio HealthServicer (its stubs lack the aio module)
    http: _Uvicorn
    http_task: asyncio.Task[None]
    providers: Sequence[Provider]
    grace: float
    router: Router | None = None
    usage: UsageSink | None = None
    closers: Sequence[Callable[[], Awaitable[None]]] = ()
    settle: Callable[[], Awaitable[None]] | None = None  # waits for pending usage writes
    calls: boundary.Calls | None = None  # the gRPC calls in flight

    async def stop(self) -> None:
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        stops = [asyncio.ensure_future(self._stop_http())]
        if self.grpc_server is not None:
            stops.append(asyncio.ensure_future(self._stop_grpc(self.grpc_server)))
        await asyncio.gather(*stops, return_exceptions=True)
        for p in self.providers:
            await p.aclose()
        for close in self.closers:
            await close()  # the database last: in-flight calls have written their usage

    async def _stop_http(self) -> None:
        """Requests get `grace` seconds to finish, as gRPC calls do (uvicorn's own limit is
        whole seconds and starts later); those still running are then cancelled, saying why,
        and each answers with the shutdown error."""
        self.http.should_exit = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.http_task), self.grace)
            return
        for task in self.http.server_state.tasks:
            task.cancel(SHUTTING_DOWN)
        await self.http_task

    async def _stop_grpc(self, server: grpc.aio.Server) -> None:
        """Calls get `grace` seconds to finish; those still running then end with UNAVAILABLE
        saying why, and grpc cuts off whatever has not ended `CUT_OFF` seconds later."""
        stopping = asyncio.ensure_future(server.stop(self.grace + CUT_OFF))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(stopping), self.grace)
            return
        if self.calls is not None:
            self.calls.expire()
        await stopping

    async def wait(self) -> None:
        await self.http_task


async def start(
    config: Config,
    providers: Sequence[Provider] | None = None,
    endpoints: Sequence[Endpoint] | None = None,
    usage: UsageSink | None = None,
    db: Database | None = None,
) -> Service:
    """Start serving.

    Tests may pass embedded `providers`, whole `endpoints`, a `usage` sink and an open `db`
    (which they keep: the service closes only a database it opened).
    """
    routing = await compose.build_routing(config, providers, endpoints)
    owned = routing.providers
    router = routing.router
    owned_db = None if db is not None else await open_storage(config)
    db = db if db is not None else owned_db
    assert db is not None  # one of the two, by construction
    await migrate(db, compose.MIGRATIONS)
    # A journal only for a database opened here, by its URL: one a test passed is its own.
    journal = open_journal(config.data_dir, database_url(config)) if owned_db else None
    parts = compose.build(config, db, router, usage, journal)
    try:
        await compose.check_can_start(config, parts.keys)
    except compose.StartupRefused:
        closers = (*(p.aclose for p in owned), *parts.closers, parts.limiter.aclose)
        for closer in (*closers, parts.store.aclose, *parts.observed.closers):
            await closer()
        if owned_db is not None:
            await owned_db.close()
        raise
    await parts.store.recover()  # usage a process that died left in the journal
    calls = boundary.Calls()
    server, health_servicer, grpc_port = await serve_grpc(config, parts.mounted, calls)
    following = asyncio.ensure_future(
        observability_health.follow(
            parts.observed.readiness, _health_setter(health_servicer), config.readiness_interval
        )
    )
    invoker = InProcessInvoker(captured(parts.mounted, boundary.in_process))
    http, task, http_port = await serve_http(config, invoker, parts.observed.routes)
    return Service(
        grpc_port,
        http_port,
        server,
        health_servicer,
        http,
        task,
        owned,
        config.grace,
        router,
        parts.usage,
        [
            *parts.closers,
            parts.store.aclose,
            parts.limiter.aclose,
            parts.plugins.aclose,
            _cancelling(following),
            *parts.observed.closers,
            *([owned_db.close] if owned_db else []),
        ],
        parts.store.flush,
        calls,
    )


def _health_setter(servicer: Any) -> observability_health.SetStatus:
    """Sets every service's gRPC health status (ignored once shutting down)."""
    names = ("", *(s.full_name for s in SERVICES))

    async def set_status(ready: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ready else _NOT_SERVING
        for name in names:
            await servicer.set(name, status)

    return set_status


_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _cancelling(task: asyncio.Future[None]) -> Callable[[], Awaitable[None]]:
    async def cancel() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return cancel


async def open_storage(config: Config) -> Database:
    """The configured database: SQLite under `data_dir` unless `database_url` says otherwise."""
    return await open_database(database_url(config))


def database_url(config: Config) -> str:
    return config.database_url or f"sqlite://{Path(config.data_dir).expanduser() / 'tokenwire.db'}"


async def serve_grpc(
    config: Config, mounted: Sequence[compose.Mounted], calls: boundary.Calls
) -> tuple[grpc.aio.Server, Any, int]:
    """The gRPC server with every service, health and reflection; returns it and its port."""
    # gRPC shares a port with SO_REUSEPORT by default: only workers should (`reuse_port`).
    server = grpc.aio.server(options=[("grpc.so_reuseport", int(config.reuse_port))])
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    # Generic handlers only: grpc.aio keeps a task per registered method and, for every call,
    # waits on all of them (asyncio.wait over ~40 tasks: ~320 Python calls a call); the generic
    # lookup is a few dictionary hits.
    wrapped = boundary.Boundary(server, calls, registered_methods=False)
    for m in mounted:
        m.add(m.servicer, wrapped)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, wrapped)
    names = [s.full_name for s in SERVICES]
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port(f"{config.host}:{config.grpc_port}")
    await server.start()
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, port


async def start_gateway(config: Config) -> Service:
    """Run only the gateway, calling a gRPC server at `config.grpc_target`."""
    if not config.grpc_target:
        raise ValueError("the gateway needs --grpc-target")
    channel = grpc.aio.insecure_channel(
        config.grpc_target, options=[("grpc.lb_policy_name", "round_robin")]
    )
    readiness = observability_health.Readiness(
        [observability_health.Check("grpc_target", observability_health.grpc_probe(channel))],
        config.readiness_timeout,
    )
    local: dict[str, LocalRoute] = {
        "/healthz": observability_health.alive,
        "/readyz": readiness.answer,
    }
    measured = None
    if config.metrics:  # its own HTTP series: the chat metrics are its gRPC server's
        local["/metrics"], measured = http_metrics.for_gateway()
    http, task, http_port = await serve_http(config, ChannelInvoker(channel), local, measured)
    return Service(None, http_port, None, None, http, task, [], config.grace)


async def serve_http(
    config: Config,
    invoker: Invoker,
    local: Mapping[str, LocalRoute] | None = None,
    measured: Callable[[Gateway], Any] | None = None,
) -> tuple[_Uvicorn, asyncio.Task[None], int]:
    """Serve the gateway over `invoker`, and the process's own `local` GET routes (metrics,
    probes), through `measured`'s wrapper when given; returns the server, its task and its
    port."""
    head = HeadLimits(config.head_timeout, config.max_head_bytes, config.max_headers)
    gateway_config = GatewayConfig(
        max_body_bytes=config.max_body_bytes,
        body_timeout=config.body_timeout,
        head=head,
        keepalive_interval=config.keepalive_interval,
    )
    gateway = Gateway(SERVICES, invoker, gateway_config, local)
    app = gateway if measured is None else measured(gateway)
    sock = socket.create_server((config.host, config.http_port), reuse_port=config.reuse_port)
    # asyncio sets TCP_NODELAY only on sockets it made itself; without it the response body
    # waits ~40 ms for the delayed ACK of its head. Accepted connections inherit the option.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    http = _Uvicorn(
        uvicorn.Config(
            app,
            http=limited_protocol(head),
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
            # a backstop: `Service.stop` cuts requests off at the grace period itself
            timeout_graceful_shutdown=math.ceil(config.grace + CUT_OFF),
        )
    )
    task = asyncio.ensure_future(http.serve(sockets=[sock]))
    while not http.started and not task.done():
        await asyncio.sleep(0.01)  # uvicorn offers no startup event to await
    if task.done():
        task.result()
    return http, task, sock.getsockname()[1]
