"""The chat pipeline and its gRPC servicer.

The pipeline takes a protobuf request and yields protobuf chunks; the
servicer only adapts it to grpc.aio and turns `TokenwireError` into a
status. Auth, limits, templates and memory plug in as stages before the
provider call.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from server import assemble, convert, parameters
from server.errors import TokenwireError
from server.providers import base
from server.registry import Registry, Target
from server.status import abort
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc

log = logging.getLogger("tokenwire.chat")


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What the transport tells about a call."""

    request_id: str
    metadata: dict[str, str]

    @classmethod
    def of(cls, context: Any) -> CallInfo:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        return cls(metadata.get("x-request-id") or uuid.uuid4().hex, metadata)


@dataclass(frozen=True, slots=True)
class Prepared:
    target: Target
    header: assemble.Header
    generation: base.GenerationRequest


class ChatPipeline:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def prepare(self, request: chat_pb2.CreateChatCompletionRequest, call: CallInfo) -> Prepared:
        """Validate and route before anything is generated, so errors come first."""
        parameters.check_implemented(request)
        target = self.registry.resolve(request.model)
        decision = parameters.decide(request, target.provider.supported, target.provider.name)
        generation = convert.without(
            convert.generation_request(request, target.card.id), decision.dropped
        )
        header = assemble.Header(
            id=f"chatcmpl-{call.request_id.removeprefix('req_')}",
            created=int(time.time()),
            model=target.card.id,
            provider=target.provider.name,
            dropped=decision.dropped,
        )
        return Prepared(target, header, generation)

    async def complete(
        self, request: chat_pb2.CreateChatCompletionRequest, call: CallInfo
    ) -> chat_pb2.CreateChatCompletionResponse:
        p = self.prepare(request, call)
        collector = assemble.Collector(p.header, p.generation.logprobs)
        async for event in p.target.provider.stream(p.generation):
            collector.add(event)
        return collector.response()

    async def stream(
        self, request: chat_pb2.CreateChatCompletionRequest, call: CallInfo
    ) -> AsyncIterator[chat_pb2.ChatCompletionChunk]:
        p = self.prepare(request, call)
        writer = assemble.ChunkWriter(p.header)
        include_usage = request.stream_options.include_usage
        events = p.target.provider.stream(p.generation)
        try:
            async for event in events:
                if isinstance(event, base.Delta):
                    yield writer.delta(event)
                elif include_usage:
                    yield writer.usage(event)
        finally:
            await events.aclose()  # type: ignore[attr-defined]


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self, pipeline: ChatPipeline) -> None:
        self._pipeline = pipeline

    async def CreateChatCompletion(
        self, request: chat_pb2.CreateChatCompletionRequest, context: Any
    ) -> chat_pb2.CreateChatCompletionResponse:
        try:
            return await self._pipeline.complete(request, CallInfo.of(context))
        except TokenwireError as e:
            await abort(context, e)
        except Exception:
            log.exception("unexpected error in CreateChatCompletion")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            raise

    async def StreamChatCompletion(
        self, request: chat_pb2.StreamChatCompletionRequest, context: Any
    ) -> AsyncIterator[chat_pb2.StreamChatCompletionResponse]:
        try:
            async for chunk in self._pipeline.stream(request.request, CallInfo.of(context)):
                yield chat_pb2.StreamChatCompletionResponse(chunk=chunk)
        except TokenwireError as e:
            await abort(context, e)
        except Exception:
            log.exception("unexpected error in StreamChatCompletion")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            raise
