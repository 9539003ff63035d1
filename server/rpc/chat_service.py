"""The chat service: `ChatPipeline` served over grpc.aio."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc

from server.errors import TokenwireError
from server.pipeline.chat import ChatPipeline
from server.pipeline.context import CallInfo
from server.rpc.status import abort
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc

log = logging.getLogger("tokenwire.chat")


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self, pipeline: ChatPipeline) -> None:
        self._pipeline = pipeline

    async def CreateChatCompletion(
        self, request: chat_pb2.CreateChatCompletionRequest, context: Any
    ) -> chat_pb2.CreateChatCompletionResponse:
        call = CallInfo.of(context)
        try:
            response = await self._pipeline.complete(request, call)
        except Exception as e:
            await _failed(context, call, e)
        if call.headers:  # none set is the same as an empty set, and skips a call into grpc
            context.set_trailing_metadata(tuple(call.headers.items()))
        return response

    async def StreamChatCompletion(
        self, request: chat_pb2.StreamChatCompletionRequest, context: Any
    ) -> AsyncIterator[chat_pb2.StreamChatCompletionResponse]:
        call = CallInfo.of(context)

        async def prepared() -> None:
            # Sent now, not with the first chunk: routing and the first token may take longer
            # than the gateway's keepalive interval, and its status line waits for this. Sent
            # even when empty, so the client knows the stages passed.
            await context.send_initial_metadata(tuple(call.headers.items()))

        try:
            async for chunk in self._pipeline.stream(request.request, call, prepared):
                yield chat_pb2.StreamChatCompletionResponse(chunk=chunk)
        except Exception as e:
            await _failed(context, call, e)


async def _failed(context: Any, call: CallInfo, error: Exception) -> NoReturn:
    """End the call with `error` as a gRPC status carrying the call's response metadata;
    bugs as INTERNAL. (A plain `except`, not a context manager: this costs nothing per call
    that succeeds.)"""
    if isinstance(error, TokenwireError):
        await abort(context, error, call.headers)
    log.error("unexpected error serving request %s", call.request_id, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
    raise error
