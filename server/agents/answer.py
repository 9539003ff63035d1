"""A finished agent run as the client gets it: one whole response, or the last chunks
of a stream (the calls handed back, the finish, `agent`, usage when asked for)."""

from __future__ import annotations

from collections.abc import Iterator

from server.agents.loop import Run
from server.agents.steps import Chunk, StepCaller
from tokenwire.chat.v1 import chat_pb2, message_pb2


def finish_reason(run: Run) -> int:
    if run.handed_back:
        return chat_pb2.FINISH_REASON_TOOL_CALLS
    if run.done:
        return run.last.finish_reason
    return chat_pb2.FINISH_REASON_STOP  # stopped by the guard: the best answer so far


def response(run: Run, caller: StepCaller) -> chat_pb2.CreateChatCompletionResponse:
    out = chat_pb2.CreateChatCompletionResponse(
        id=caller.run_id,
        object="chat.completion",
        created=caller.created,
        model=run.last.model,
        provider=run.last.provider,
        usage=run.usage,
        agent=run.summary(),
    )
    choice = out.choices.add(index=0, finish_reason=finish_reason(run))
    choice.message.role = message_pb2.ROLE_ASSISTANT
    text = run.last.content if run.done or run.handed_back else run.best
    if text:
        choice.message.content = text
    choice.message.tool_calls.extend(run.handed_back)
    return out


def last_chunks(run: Run, caller: StepCaller, include_usage: bool) -> Iterator[Chunk]:
    if run.handed_back:
        yield _handed_back(run, caller)
    end = caller.chunk(run.last.model, run.last.provider)
    choice = end.choices.add(index=0, finish_reason=finish_reason(run))
    if not caller.role_sent:
        choice.delta.role = message_pb2.ROLE_ASSISTANT
    end.agent.CopyFrom(run.summary())
    yield end
    if include_usage:
        usage = caller.chunk(run.last.model, run.last.provider)
        usage.usage.CopyFrom(run.usage)
        yield usage


def _handed_back(run: Run, caller: StepCaller) -> Chunk:
    chunk = caller.chunk(run.last.model, run.last.provider)
    choice = chunk.choices.add(index=0)
    if not caller.role_sent:
        caller.role_sent = True
        choice.delta.role = message_pb2.ROLE_ASSISTANT
    for i, call in enumerate(run.handed_back):
        part = choice.delta.tool_calls.add(index=i, id=call.id, type=message_pb2.TOOL_TYPE_FUNCTION)
        part.function.name = call.function.name
        part.function.arguments = call.function.arguments
    return chunk
