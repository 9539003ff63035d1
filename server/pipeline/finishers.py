"""Finishers: what plugins do to an answer once its text is complete.

A stage that wants to act on the output (response healing, the web plugin's
citations) adds a `Finisher` to `ctx.finishers`. A whole completion passes each
of its choices through `whole`; a stream passes each choice's message, assembled
from its deltas, to `last` with the chunk carrying that choice's finish reason, so
the verdict rides on the choice's last chunk while every earlier chunk goes out
untouched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from server.pipeline.assemble import Choice
from server.providers import base
from tokenwire.chat.v1 import chat_pb2


class Finisher(Protocol):
    def whole(self, choice: chat_pb2.Choice) -> None:
        """Edit or annotate a finished choice of a whole completion."""
        ...

    def last(self, choice: chat_pb2.ChunkChoice, message: chat_pb2.ResponseMessage) -> None:
        """Annotate a stream's last chunk of a choice, given the choice's whole message."""
        ...


def finish_whole(
    finishers: Sequence[Finisher], response: chat_pb2.CreateChatCompletionResponse
) -> None:
    for choice in response.choices:
        for finisher in finishers:
            finisher.whole(choice)


class StreamFinishing:
    """Gathers each choice's message from the deltas so finishers see it at the end."""

    def __init__(self, finishers: Sequence[Finisher]) -> None:
        self._finishers = tuple(finishers)
        self._choices: defaultdict[int, Choice] = defaultdict(Choice)

    def see(self, delta: base.Delta, chunk: chat_pb2.ChatCompletionChunk) -> None:
        self._choices[delta.choice].add(delta)
        if delta.finish_reason is None:
            return
        message = chat_pb2.ResponseMessage()
        self._choices.pop(delta.choice).fill(message)
        for finisher in self._finishers:
            finisher.last(chunk.choices[0], message)
