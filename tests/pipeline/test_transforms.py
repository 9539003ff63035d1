"""middle-out at scale: what it keeps is as before, at a cost linear in the messages.

Before, each message it dropped re-estimated every message and re-scanned every tool
call: 20k messages took minutes of CPU, which a client could ask for in one request.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest

from server.pipeline import transforms
from server.providers.base import Message, ToolCall


def reference(messages: Sequence[Message], budget: int) -> tuple[Message, ...]:
    """The quadratic middle-out this replaced, as it was."""
    head = [m for m in messages if m.role in ("system", "developer")]
    turns = [m for m in messages if m.role not in ("system", "developer")]
    while len(turns) > 1 and transforms.estimate_tokens(head + turns) > budget:
        del turns[min((len(turns) - 1) // 2, len(turns) - 2)]
        while True:
            calls = {c.id for m in turns for c in m.tool_calls}
            results = {m.tool_call_id for m in turns if m.role == "tool"}
            kept = [
                m
                for m in turns
                if (m.role != "tool" or m.tool_call_id in calls)
                and all(c.id in results for c in m.tool_calls)
            ]
            if len(kept) == len(turns):
                break
            turns[:] = kept
    return (*head, *turns)


def conversation(rng: random.Random, size: int) -> list[Message]:
    """Turns of every kind, with calls answered, unanswered, answered twice, ids shared."""
    chat: list[Message] = []
    ids = [f"call_{i}" for i in range(max(1, size // 3))]
    for _ in range(size):
        text = "x" * rng.randrange(0, 400)
        kind = rng.random()
        if kind < 0.1:
            chat.append(Message(rng.choice(["system", "developer"]), text))
        elif kind < 0.35:
            calls = tuple(ToolCall(rng.choice(ids), "f", "{}") for _ in range(rng.randrange(3)))
            chat.append(Message("assistant", text or None, tool_calls=calls))
        elif kind < 0.6:
            chat.append(Message("tool", text, tool_call_id=rng.choice([*ids, None])))
        else:
            chat.append(Message("user", text))
    return chat


@pytest.mark.parametrize("seed", range(200))
def test_middle_out_keeps_what_it_kept_before(seed: int) -> None:
    rng = random.Random(seed)
    chat = conversation(rng, rng.randrange(1, 60))
    for budget in (0, 20, rng.randrange(0, 3000), 10**9):
        assert transforms.middle_out(chat, budget) == reference(chat, budget), budget


def test_middle_out_estimates_each_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    chat: list[Message] = [Message("system", "be brief")]
    for i in range(1000):
        call = ToolCall(f"call_{i}", "lookup", "{}")
        chat += [
            Message("assistant", tool_calls=(call,)),
            Message("tool", "r", tool_call_id=call.id),
        ]
        chat.append(Message("user", f"next {i}"))
    estimated = 0
    text: Callable[[Message], str] = Message.text

    def counted(m: Message) -> str:
        nonlocal estimated
        estimated += 1
        return text(m)

    monkeypatch.setattr(Message, "text", counted)
    kept = transforms.middle_out(chat, budget=100)
    assert 1 < len(kept) < len(chat) and kept[-1] == chat[-1]
    assert estimated == len(chat)  # before: ~3 million
