"""Liveness and readiness, as `GET /healthz` and `GET /readyz` answer them.

`/healthz` says the process serves. `/readyz` runs every readiness check at once, each
bounded by a timeout: the database answers, Redis answers (when configured), and every
served model has a provider whose circuit breaker is not open (a local model is loaded
before the service starts, so serving it is being loaded). The JSON body names each part
and what is wrong with it; the status is 200 when all are ready, else 503. The gRPC health
service follows the same checks (`follow`): every service is SERVING or NOT_SERVING. A
gateway running alone is ready when its gRPC server's health service says SERVING.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from server.routing.router import Router
from server.storage.database import Database

Probe = Callable[[], Awaitable[None]]  # returns when the part is ready, raises when not
JSON = "application/json"
OK = "ok"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    probe: Probe


@dataclass(frozen=True, slots=True)
class Answer:
    """What a probe route sends: status, body, content type."""

    status: int
    body: bytes
    content_type: str = JSON


class Readiness:
    def __init__(self, checks: Sequence[Check], timeout: float = 2.0) -> None:
        self.checks = tuple(checks)
        self.timeout = timeout

    async def report(self) -> dict[str, str]:
        """Each check's name and `ok` or what is wrong."""
        results = await asyncio.gather(*(self._run(c) for c in self.checks))
        return dict(zip((c.name for c in self.checks), results, strict=True))

    async def _run(self, check: Check) -> str:
        try:
            await asyncio.wait_for(check.probe(), self.timeout)
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except Exception as e:  # whatever the part raised, the probe reports rather than fails
            return f"{type(e).__name__}: {e}".strip()[:300]
        return OK

    async def answer(self) -> Answer:
        checks = await self.report()
        ready = all(v == OK for v in checks.values())
        body = {"status": "ready" if ready else "not_ready", "checks": checks}
        return Answer(200 if ready else 503, orjson.dumps(body))


async def alive() -> Answer:
    return Answer(200, b'{"status":"ok"}')


SetStatus = Callable[[bool], Awaitable[None]]


async def follow(readiness: Readiness, set_status: SetStatus, interval: float) -> None:
    """Keep the gRPC health service saying what `/readyz` says, checking every `interval`
    seconds (a gRPC health check reads a stored status; it does not run the checks)."""
    last: bool | None = None
    while True:
        checks = await readiness.report()
        ready = all(v == OK for v in checks.values())
        if ready is not last:
            await set_status(ready)
            last = ready
        await asyncio.sleep(interval)


def database_probe(db: Database) -> Probe:
    async def probe() -> None:
        await db.fetchrow("SELECT 1")

    return probe


def redis_probe(url: str, timeout: float) -> tuple[Probe, Callable[[], Awaitable[None]]]:
    """A probe pinging the Redis at `url`, and the closer of its own small client."""
    import redis.asyncio as redis

    client = redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    async def probe() -> None:
        await client.ping()

    return probe, client.aclose


def grpc_probe(channel: Any) -> Probe:
    """A standalone gateway's server: its gRPC health service says SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)

    async def probe() -> None:
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=""))
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            raise NotServing(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

    return probe


class NotServing(Exception):
    """The gRPC server behind a gateway says it does not serve."""


def models_probe(router: Router) -> Probe:
    async def probe() -> None:
        cut_off = [
            model
            for model, endpoints in router.catalog.models()
            if all(router.breakers[e.name].state == "open" for e in endpoints)
        ]
        if cut_off:
            raise ModelsUnavailable(f"every provider of {', '.join(sorted(cut_off))} is cut off")

    return probe


class ModelsUnavailable(Exception):
    """Served models whose every provider's circuit breaker is open."""
