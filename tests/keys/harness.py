"""A real tokenwire slice for tests: admin, usage and chat services on a grpc.aio server on
port 0, with the auth, tag, limit and budget stages and the usage store on a real database,
plus the REST gateway in front (in-process or over the channel) through httpx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import httpx

from gateway.app import Gateway
from gateway.config import GatewayConfig
from gateway.in_process import InProcessInvoker, captured
from gateway.invoker import ChannelInvoker, Invoker
from server.keys import admin
from server.keys.admin import AdminServicer
from server.keys.auth import AdminCredential, KeyAuthenticator
from server.keys.ledger import KeyLedger
from server.keys.migrations import MIGRATIONS as KEYS
from server.keys.quotas import KeyQuotas
from server.keys.stage import AuthStage
from server.keys.store import KeyStore
from server.limits.in_process import MemoryLimiter
from server.limits.stage import LimitStage
from server.pipeline.chat import ChatPipeline
from server.pipeline.context import Stage
from server.providers.fake import FakeProvider
from server.routing.catalog import Catalog, Endpoint
from server.routing.router import Router
from server.rpc import boundary
from server.rpc.access import Access
from server.rpc.chat_service import ChatServicer
from server.storage.database import Database
from server.storage.migrations import migrate
from server.usage import service
from server.usage.budget import BudgetStage
from server.usage.migrations import MIGRATIONS as USAGE
from server.usage.service import UsageServicer
from server.usage.store import UsageStore
from server.usage.tags import TagStage
from tests.limits.clock import Clock
from tokenwire.admin.v1 import admin_pb2_grpc
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc
from tokenwire.usage.v1 import usage_pb2_grpc

ADMIN = "admin-token-0123456789"
SERVICES = (
    admin.DESCRIPTOR,
    service.DESCRIPTOR,
    chat_pb2.DESCRIPTOR.services_by_name["ChatService"],
)
# 0.01 USD per prompt or completion token: the fake echo of "hello there" costs 0.04.
PRICE = 10_000.0


@dataclass
class Served:
    channel: grpc.aio.Channel
    store: KeyStore
    usage: UsageStore
    clock: Clock
    registrations: list[tuple[Any, Any]]

    def http(self, invoker: str = "channel") -> httpx.AsyncClient:
        """The REST gateway in front of the services, in-process or over the channel."""
        chosen: Invoker = (
            InProcessInvoker(
                captured(self.registrations, boundary.in_process), peer="ipv4:127.0.0.1:1"
            )
            if invoker == "in-process"
            else ChannelInvoker(self.channel)
        )
        app = Gateway(SERVICES, chosen, GatewayConfig())
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4242))
        return httpx.AsyncClient(transport=transport, base_url="http://tokenwire")

    def admin(self) -> admin_pb2_grpc.AdminServiceAsyncStub:
        return admin_pb2_grpc.AdminServiceStub(self.channel)

    def usage_stub(self) -> usage_pb2_grpc.UsageServiceAsyncStub:
        return usage_pb2_grpc.UsageServiceStub(self.channel)

    def chat(self) -> chat_pb2_grpc.ChatServiceAsyncStub:
        return chat_pb2_grpc.ChatServiceStub(self.channel)


def pipeline(db: Database, store: KeyStore, usage: UsageStore, clock: Clock) -> ChatPipeline:
    fake = FakeProvider()
    endpoint = Endpoint("fake-echo", fake, "fake-echo", prompt_price=PRICE, completion_price=PRICE)
    other = Endpoint("other-model", fake, "fake-echo")
    stages: list[Stage] = [
        AuthStage(Access(KeyAuthenticator(store), AdminCredential(ADMIN))),
        TagStage(),
        LimitStage(MemoryLimiter(clock), KeyQuotas(db)),
        BudgetStage(KeyLedger(db)),
    ]
    return ChatPipeline(Router(Catalog([endpoint, other])), usage, stages)


@asynccontextmanager
async def serve(db: Database, clock: Clock) -> AsyncIterator[Served]:
    await migrate(db, KEYS + USAGE)
    store, usage = KeyStore(db, clock), UsageStore(db)
    access = Access(KeyAuthenticator(store), AdminCredential(ADMIN))
    registrations: list[tuple[Any, Any]] = [
        (
            admin_pb2_grpc.add_AdminServiceServicer_to_server,
            AdminServicer(store, access, clock),
        ),
        (
            usage_pb2_grpc.add_UsageServiceServicer_to_server,
            UsageServicer(usage, access, store.organizations),
        ),
        (
            chat_pb2_grpc.add_ChatServiceServicer_to_server,
            ChatServicer(pipeline(db, store, usage, clock)),
        ),
    ]
    server = grpc.aio.server()
    wrapped = boundary.Boundary(server, boundary.Calls())  # as tokenwire serves them
    for add, servicer in registrations:
        add(servicer, wrapped)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Served(channel, store, usage, clock, registrations)
    await server.stop(None)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


ADMIN_METADATA = bearer(ADMIN)
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def trailing(metadata: Any) -> dict[str, str]:
    """The text entries of a call's (trailing) metadata."""
    return {str(k): v for k, v in metadata or () if isinstance(v, str)}
