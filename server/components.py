"""Every service and pipeline stage tokenwire serves, built from the config in one place.

auth ▶ template ▶ memory   (stages, in this order, before routing)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from server.chat import ChatPipeline, ChatServicer
from server.config import Config
from server.context import OpenAuthenticator, Stage, UsageSink
from server.keys.stage import AuthStage
from server.memory import service as memory_service
from server.memory import store as memory_store
from server.memory.stage import MemoryStage, RecallConfig
from server.models import ModelServicer
from server.router import Router
from server.storage.database import Database
from server.templates import service as template_service
from server.templates import store as template_store
from server.templates.stage import TemplateStage
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, models_pb2, models_pb2_grpc
from tokenwire.memory.v1 import memory_pb2_grpc
from tokenwire.templates.v1 import templates_pb2_grpc

SERVICES = (
    chat_pb2.DESCRIPTOR.services_by_name["ChatService"],
    models_pb2.DESCRIPTOR.services_by_name["ModelService"],
    template_service.DESCRIPTOR,
    memory_service.DESCRIPTOR,
)

MIGRATIONS = (*template_store.MIGRATIONS, *memory_store.MIGRATIONS)


class Mounted(NamedTuple):
    """A servicer and the generated function that adds it to a (real or capturing) server."""

    add: Callable[[Any, Any], None]
    servicer: Any


@dataclass(frozen=True, slots=True)
class Parts:
    mounted: tuple[Mounted, ...]
    stages: tuple[Stage, ...]
    usage: UsageSink


def build(config: Config, db: Database, router: Router, usage: UsageSink) -> Parts:
    authenticator = OpenAuthenticator()
    templates = template_store.TemplateStore(db)
    memories = memory_store.MemoryStore(db)
    recall = RecallConfig(
        budget_tokens=config.memory_budget_tokens,
        candidates=config.memory_candidates,
        recent_messages=config.memory_recent_messages,
    )
    stages: tuple[Stage, ...] = (
        AuthStage(authenticator),
        TemplateStage(templates),
        MemoryStage(memories, recall),
    )
    chat = ChatServicer(ChatPipeline(router, usage, stages))
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
    )
    return Parts(mounted, stages, usage)
