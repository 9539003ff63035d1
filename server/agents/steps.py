"""One model call of an agent loop, through the chat pipeline (its stages, limits, routing
and usage apply to each call), unary or streamed.

Either way the call fills an `Answer`. Streamed, the answer's text goes on to
the client as it comes (as chunks of the run, re-labelled with its id); tool
call fragments are assembled and held back, since only the loop knows whether
a call runs here or goes back to the client.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from server.pipeline.chat import ChatPipeline, Prepared
from server.pipeline.context import CallInfo
from tokenwire.chat.v1 import chat_pb2, message_pb2

Chunk = chat_pb2.ChatCompletionChunk


@dataclass
class Answer:
    """What one model call answered."""

    content: str = ""
    tool_calls: list[message_pb2.ToolCall] = field(default_factory=list)
    finish_reason: int = chat_pb2.FINISH_REASON_STOP
    usage: chat_pb2.Usage = field(default_factory=chat_pb2.Usage)
    model: str = ""
    provider: str = ""
    duration_ms: float = 0.0


class StepCaller:
    """Makes the model calls of one run, unary (`streamed` False) or streamed."""

    def __init__(
        self, pipeline: ChatPipeline, run_id: str, streamed: bool, prepared: Prepared | None = None
    ) -> None:
        self._pipeline = pipeline
        self.run_id = run_id
        self.streamed = streamed
        self._prepared = prepared  # the client's initial metadata: sent by the first call only
        self.role_sent = False
        self.created = int(time.time())

    async def call(
        self, request: chat_pb2.CreateChatCompletionRequest, call: CallInfo, answer: Answer
    ) -> AsyncIterator[Chunk]:
        """Make one call, filling `answer`; streamed, yield the answer's text as chunks."""
        started = time.monotonic()
        if self.streamed:
            async for chunk in self._stream(request, call, answer):
                yield chunk
        else:
            _from_response(await self._pipeline.complete(request, call), answer)
        answer.duration_ms = (time.monotonic() - started) * 1000

    async def _stream(
        self, request: chat_pb2.CreateChatCompletionRequest, call: CallInfo, answer: Answer
    ) -> AsyncIterator[Chunk]:
        request.stream = True
        request.stream_options.include_usage = True
        prepared, self._prepared = self._prepared, None
        calls: dict[int, message_pb2.ToolCall] = {}
        async for streamed in self._pipeline.stream(request, call, prepared):
            chunk = streamed.chunk
            answer.model, answer.provider = chunk.model, chunk.provider
            if chunk.HasField("usage"):
                answer.usage.CopyFrom(chunk.usage)
            for choice in chunk.choices:
                if choice.finish_reason:
                    answer.finish_reason = choice.finish_reason
                _gather(choice.delta, calls)
                if choice.delta.content:
                    answer.content += choice.delta.content
                    yield self.text_chunk(chunk, choice.delta.content)
        answer.tool_calls = [calls[i] for i in sorted(calls)]

    def text_chunk(self, like: Chunk, text: str) -> Chunk:
        """A chunk of the run carrying `text` (the role on the run's first)."""
        out = self.chunk(like.model, like.provider)
        choice = out.choices.add(index=0)
        choice.delta.content = text
        if not self.role_sent:
            self.role_sent = True
            choice.delta.role = message_pb2.ROLE_ASSISTANT
        return out

    def chunk(self, model: str, provider: str) -> Chunk:
        return Chunk(
            id=self.run_id,
            object="chat.completion.chunk",
            created=self.created,
            model=model,
            provider=provider,
        )


def _gather(delta: chat_pb2.Delta, calls: dict[int, message_pb2.ToolCall]) -> None:
    """Assemble streamed tool call fragments into whole calls, by index."""
    for part in delta.tool_calls:
        call = calls.setdefault(
            part.index, message_pb2.ToolCall(type=message_pb2.TOOL_TYPE_FUNCTION)
        )
        if part.HasField("id"):
            call.id = part.id
        if part.function.HasField("name"):
            call.function.name = part.function.name
        call.function.arguments += part.function.arguments


def _from_response(response: chat_pb2.CreateChatCompletionResponse, answer: Answer) -> None:
    answer.model, answer.provider = response.model, response.provider
    answer.usage.CopyFrom(response.usage)
    if response.choices:
        choice = response.choices[0]
        answer.content = choice.message.content
        answer.tool_calls = list(choice.message.tool_calls)
        answer.finish_reason = choice.finish_reason
