"""Provider events into protobuf chunks and whole completions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from gateway.transcode import enum_names
from server.providers import base
from tokenwire.chat.v1 import chat_pb2, message_pb2

# `base.FinishReason` is a str enum of OpenAI's names, which the proto's values carry too.
_FINISH = cast(
    "dict[str, chat_pb2.FinishReason.ValueType]",
    enum_names(chat_pb2.FinishReason.DESCRIPTOR).by_name,
)


@dataclass(slots=True)
class Header:
    """What every chunk and the whole completion share; read-only (not frozen, as a frozen
    `__init__` costs an `object.__setattr__` per field, on every request)."""

    id: str
    created: int
    model: str
    provider: str
    dropped: tuple[str, ...] = ()


def fill_usage(out: chat_pb2.Usage, u: base.Usage) -> None:
    """Write `u` into the message's own usage field (not a new message copied in)."""
    out.prompt_tokens = u.prompt_tokens
    out.completion_tokens = u.completion_tokens
    out.total_tokens = u.prompt_tokens + u.completion_tokens
    out.prompt_tokens_details.cached_tokens = u.cached_tokens
    out.prompt_tokens_details.cache_write_tokens = u.cache_write_tokens
    out.completion_tokens_details.reasoning_tokens = u.reasoning_tokens
    if u.estimated:
        out.estimated = True


def _logprobs(items: Iterable[base.TokenLogprob]) -> list[chat_pb2.TokenLogprob]:
    return [
        chat_pb2.TokenLogprob(
            token=t.token,
            logprob=t.logprob,
            bytes=t.bytes,
            top_logprobs=[
                chat_pb2.TopLogprob(token=a.token, logprob=a.logprob, bytes=a.bytes) for a in t.top
            ],
        )
        for t in items
    ]


class ChunkWriter:
    """Turns deltas into the stream's messages (a chunk each); the first delta of each choice
    carries the role."""

    def __init__(self, header: Header) -> None:
        self.header = header
        self._started: set[int] = set()
        h = header
        head = chat_pb2.ChatCompletionChunk(
            id=h.id,
            object="chat.completion.chunk",
            created=h.created,
            model=h.model,
            provider=h.provider,
        )
        # Every message starts as a copy of these fields: parsing them is cheaper than setting
        # them, and parsing the whole message is cheaper than building a chunk and then
        # copying it into a message (`StreamChatCompletionResponse(chunk=…)` copies).
        self._head = chat_pb2.StreamChatCompletionResponse(chunk=head).SerializeToString()

    def _message(self) -> chat_pb2.StreamChatCompletionResponse:
        return chat_pb2.StreamChatCompletionResponse.FromString(self._head)

    def delta(self, d: base.Delta) -> chat_pb2.StreamChatCompletionResponse:
        message = self._message()
        chunk = message.chunk
        choice = chunk.choices.add(index=d.choice)
        if d.choice not in self._started:
            self._started.add(d.choice)
            choice.delta.role = message_pb2.ROLE_ASSISTANT
            chunk.dropped_parameters.extend(self.header.dropped if d.choice == 0 else ())
        _fill_delta(choice, d)
        return message

    def debug(self, upstream_body: str) -> chat_pb2.StreamChatCompletionResponse:
        message = self._message()
        message.chunk.debug.echo_upstream_body = upstream_body
        return message

    def usage(self, u: base.Usage) -> chat_pb2.StreamChatCompletionResponse:
        message = self._message()
        fill_usage(message.chunk.usage, u)
        return message


def _fill_delta(choice: chat_pb2.ChunkChoice, d: base.Delta) -> None:
    if d.content or not (d.reasoning or d.refusal or d.tool_calls):
        choice.delta.content = d.content
    if d.reasoning:
        choice.delta.reasoning = d.reasoning
    if d.refusal:
        choice.delta.refusal = d.refusal
    for t in d.tool_calls:
        call = choice.delta.tool_calls.add(index=t.index)
        if t.id is not None:
            call.id = t.id
            call.type = message_pb2.TOOL_TYPE_FUNCTION
        if t.name is not None:
            call.function.name = t.name
        call.function.arguments = t.arguments
    if d.logprobs:
        choice.logprobs.content.extend(_logprobs(d.logprobs))
    if d.finish_reason is not None:
        choice.finish_reason = _FINISH[d.finish_reason]


@dataclass
class Choice:
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    calls: dict[int, list[str]] = field(default_factory=dict)  # index -> [id, name, args…]
    logprobs: list[base.TokenLogprob] = field(default_factory=list)
    finish: base.FinishReason = base.FinishReason.STOP

    def add(self, d: base.Delta) -> None:
        self.content.append(d.content)
        self.reasoning.append(d.reasoning)
        self.refusal.append(d.refusal)
        self.logprobs.extend(d.logprobs)
        for t in d.tool_calls:
            call = self.calls.setdefault(t.index, ["", ""])
            call[0] = t.id or call[0]
            call[1] = t.name or call[1]
            call.append(t.arguments)
        if d.finish_reason is not None:
            self.finish = d.finish_reason

    def fill(self, m: chat_pb2.ResponseMessage) -> None:
        """The assistant message the deltas so far add up to."""
        m.role = message_pb2.ROLE_ASSISTANT
        text = "".join(self.content)
        if text or not self.calls:
            m.content = text
        if any(self.reasoning):
            m.reasoning = "".join(self.reasoning)
        if any(self.refusal):
            m.refusal = "".join(self.refusal)
        for index in sorted(self.calls):
            call_id, name, *args = self.calls[index]
            m.tool_calls.add(id=call_id, type=message_pb2.TOOL_TYPE_FUNCTION).function.MergeFrom(
                message_pb2.FunctionCall(name=name, arguments="".join(args))
            )


class Collector:
    """Collects a stream of events into one whole completion."""

    def __init__(self, header: Header, logprobs: bool) -> None:
        self.header = header
        self._logprobs = logprobs
        self._choices: defaultdict[int, Choice] = defaultdict(Choice)
        self._usage: base.Usage | None = None

    def add(self, event: base.Event) -> None:
        if isinstance(event, base.Usage):
            self._usage = event
        else:
            self._choices[event.choice].add(event)

    def response(self) -> chat_pb2.CreateChatCompletionResponse:
        h = self.header
        out = chat_pb2.CreateChatCompletionResponse(
            id=h.id,
            object="chat.completion",
            created=h.created,
            model=h.model,
            provider=h.provider,
            dropped_parameters=h.dropped,
        )
        choices = self._choices or {0: Choice()}
        for index in sorted(choices):
            self._fill(out.choices.add(index=index), choices[index])
        if self._usage is not None:
            fill_usage(out.usage, self._usage)
        return out

    def _fill(self, choice: chat_pb2.Choice, c: Choice) -> None:
        c.fill(choice.message)
        choice.finish_reason = _FINISH[c.finish]
        if self._logprobs:
            choice.logprobs.content.extend(_logprobs(c.logprobs))
            choice.logprobs.SetInParent()
