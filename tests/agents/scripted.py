"""A scripted OpenAI-compatible model on 127.0.0.1 for agent tests: each request takes the
next `Turn` (tool calls, or text), answered as SSE or as one JSON body, as the request asks.

Built on `tests.routing.upstream_server.Upstream` (a real HTTP server on port 0), which
keeps what each request carried (`requests`), so tests see what the model was sent.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.routing.upstream_server import DONE, Received, Reply, Upstream, chunk, usage_chunk

USAGE = (10, 5)  # prompt, completion tokens of every answer


@dataclass(frozen=True)
class Turn:
    """One model answer: text, or tool calls as (name, arguments)."""

    text: str = ""
    calls: Sequence[tuple[str, dict[str, Any]]] = ()


def say(text: str) -> Turn:
    return Turn(text=text)


def call(*calls: tuple[str, dict[str, Any]]) -> Turn:
    return Turn(calls=calls)


@dataclass
class Script:
    """The turns left; when none are, the model says `done`."""

    turns: deque[Turn] = field(default_factory=deque)
    answered: int = 0

    def __call__(self, received: Received) -> Reply:
        turn = self.turns.popleft() if self.turns else say("done")
        self.answered += 1
        if received.body.get("stream"):
            return Reply(events=_events(turn, self.answered))
        return Reply(body=json.dumps(_whole(turn, self.answered)).encode())


def _tool_calls(turn: Turn, n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{n}_{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        for i, (name, arguments) in enumerate(turn.calls)
    ]


def _finish(turn: Turn) -> str:
    return "tool_calls" if turn.calls else "stop"


def _whole(turn: Turn, n: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
    if turn.calls:
        message["tool_calls"] = _tool_calls(turn, n)
    choice = {"index": 0, "message": message, "finish_reason": _finish(turn)}
    usage = {"prompt_tokens": USAGE[0], "completion_tokens": USAGE[1], "total_tokens": sum(USAGE)}
    return {
        "id": f"up-{n}",
        "object": "chat.completion",
        "created": 1,
        "model": "up",
        "choices": [choice],
        "usage": usage,
    }


def _events(turn: Turn, n: int) -> list[bytes]:
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": word}) for word in _words(turn.text)]
    for i, part in enumerate(_tool_calls(turn, n)):
        events.append(chunk({"tool_calls": [{"index": i, **part}]}))
    events.append(chunk({}, _finish(turn)))
    return [*events, usage_chunk(*USAGE), DONE]


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words) if text]


class ScriptedModel(Upstream):
    """An upstream answering from a `Script`; `script(...)` queues turns."""

    def __init__(self) -> None:
        self.turns = Script()
        super().__init__(self.turns)

    def queue(self, *turns: Turn) -> None:
        self.turns.turns.extend(turns)

    def sent(self, i: int = -1) -> list[dict[str, Any]]:
        """The messages of request `i`."""
        messages: list[dict[str, Any]] = self.requests[i].body["messages"]
        return messages
