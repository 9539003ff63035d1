"""Deltas into the stream's chunks (`ChunkWriter`): what each chunk says, choice by choice."""

from __future__ import annotations

from server.pipeline import assemble
from server.providers import base
from tokenwire.chat.v1 import chat_pb2, message_pb2

HEADER = assemble.Header("chatcmpl-1", 1795323978, "fake-echo", "fake", ("seed",))


def built(choice: chat_pb2.ChunkChoice, dropped: tuple[str, ...] = ()) -> bytes:
    """The message of one chunk, built field by field."""
    chunk = chat_pb2.ChatCompletionChunk(
        id="chatcmpl-1", object="chat.completion.chunk", created=1795323978,
        model="fake-echo", provider="fake", choices=[choice], dropped_parameters=dropped,
    )  # fmt: skip
    return chat_pb2.StreamChatCompletionResponse(chunk=chunk).SerializeToString()


def test_each_choice_starts_with_the_role_and_only_the_first_names_dropped_parameters() -> None:
    writer = assemble.ChunkWriter(HEADER)
    deltas = [
        base.Delta(content="a"),
        base.Delta(content="b", choice=1),
        base.Delta(content="c"),
        base.Delta(finish_reason=base.FinishReason.STOP, choice=1),
    ]
    got = [writer.delta(d).SerializeToString() for d in deltas]
    assistant = message_pb2.ROLE_ASSISTANT
    stop = chat_pb2.FINISH_REASON_STOP
    assert got == [
        built(chat_pb2.ChunkChoice(delta=chat_pb2.Delta(role=assistant, content="a")), ("seed",)),
        built(chat_pb2.ChunkChoice(index=1, delta=chat_pb2.Delta(role=assistant, content="b"))),
        built(chat_pb2.ChunkChoice(delta=chat_pb2.Delta(content="c"))),
        built(chat_pb2.ChunkChoice(index=1, delta=chat_pb2.Delta(content=""), finish_reason=stop)),
    ]


def test_debug_and_usage_chunks_carry_no_choice() -> None:
    writer = assemble.ChunkWriter(HEADER)
    assert not writer.debug("{}").chunk.choices
    usage = writer.usage(base.Usage(prompt_tokens=2, completion_tokens=3))
    assert not usage.chunk.choices
    assert usage.chunk.usage.total_tokens == 5
