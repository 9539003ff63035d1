"""Prompt transforms applied per endpoint before inference.

`middle-out` (OpenRouter's): when the prompt does not fit the model's
context, drop messages from the middle, keeping the system prompt and the
most recent turns. Tokens are estimated (about four characters each), so it
leaves a margin rather than counting exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

from server.errors import InvalidRequest
from server.providers.base import Message

KNOWN = frozenset({"middle-out"})
_PER_MESSAGE = 4  # role and separators


def estimate_tokens(messages: Sequence[Message]) -> int:
    return sum(_PER_MESSAGE + (len(m.text()) + 3) // 4 for m in messages)


def check(transforms: Sequence[str]) -> None:
    for i, name in enumerate(transforms):
        if name not in KNOWN:
            raise InvalidRequest(
                f"Unknown transform '{name}'; known: {', '.join(sorted(KNOWN))}.",
                param=f"transforms[{i}]",
            )


def middle_out(messages: Sequence[Message], budget: int) -> tuple[Message, ...]:
    """Drop middle messages until the estimate fits `budget` tokens (never the last one)."""
    head = [m for m in messages if m.role in ("system", "developer")]
    turns = [m for m in messages if m.role not in ("system", "developer")]
    while len(turns) > 1 and estimate_tokens(head + turns) > budget:
        del turns[_middle(turns)]
        _drop_orphans(turns)
    return (*head, *turns)


def _middle(turns: list[Message]) -> int:
    """The message nearest the middle, never the last."""
    return min((len(turns) - 1) // 2, len(turns) - 2)


def _drop_orphans(turns: list[Message]) -> None:
    """A tool result whose call was dropped, or a call whose result was, would confuse any
    model (OpenAI refuses both): drop them too, until every call has its results."""
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
            return
        turns[:] = kept
