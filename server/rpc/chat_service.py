"""The chat service: `ChatPipeline`, behind `AgentDispatch`, served over gRPC (the boundary
handles errors and metadata)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from grpc.aio import ServicerContext

from server.pipeline.chat import Prepared
from server.pipeline.context import CallInfo
from server.rpc.boundary import CALL
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc

Request = chat_pb2.CreateChatCompletionRequest
Response = chat_pb2.CreateChatCompletionResponse
StreamRequest = chat_pb2.StreamChatCompletionRequest
StreamResponse = chat_pb2.StreamChatCompletionResponse


class Completions(Protocol):
    """What the servicer serves: the `ChatPipeline`, or `AgentDispatch` in front of it."""

    async def complete(self, request: Request, call: CallInfo) -> Response: ...

    def stream(
        self, request: Request, call: CallInfo, prepared: Prepared | None = None
    ) -> AsyncGenerator[StreamResponse, None]: ...


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self, pipeline: Completions) -> None:
        self._pipeline = pipeline

    async def CreateChatCompletion(
        self, request: Request, context: ServicerContext[Request, Response]
    ) -> Response:
        return await self._pipeline.complete(request, CALL.get())

    def StreamChatCompletion(
        self, request: StreamRequest, context: ServicerContext[StreamRequest, StreamResponse]
    ) -> AsyncGenerator[StreamResponse, None]:
        """The pipeline's own stream, handed to the boundary as it is (no hop per chunk)."""
        call = CALL.get()

        async def prepared() -> None:
            # Sent now, not with the first chunk: routing and the first token may take longer
            # than the gateway's keepalive interval, and its status line waits for this. Sent
            # even when empty, so the client knows the stages passed.
            await context.send_initial_metadata(tuple(call.headers.items()))

        return self._pipeline.stream(request.request, call, prepared)
