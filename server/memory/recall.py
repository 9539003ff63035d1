"""What recall asks for and what it adds: the query, the token budget, the delimited block.

The block is one system message:

    Relevant memories:
    <memory id="3f0c…">Alice prefers answers in French.</memory>
    <memory id="9a41…">The deploy window is Tuesday 14:00 UTC.</memory>

Memory text is escaped (`&`, `<`, `>`), so no memory can close its tag or
forge another. Sizes are estimated (`server.tokens`).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from server import tokens
from server.memory.model import Memory, Scored
from tokenwire.chat.v1 import message_pb2

HEADER = "Relevant memories:"
MAX_QUERY_CHARS = 2000


def estimate_tokens(text: str) -> int:
    return tokens.estimate_tokens(len(text))


def text_of(message: message_pb2.ChatMessage) -> str:
    if message.WhichOneof("content") == "content_text":
        return message.content_text
    return " ".join(p.text for p in message.content_parts.parts if p.HasField("text"))


def user_texts(messages: Iterable[message_pb2.ChatMessage]) -> list[str]:
    """The text of each user message, oldest first (empty ones left out)."""
    texts = (text_of(m) for m in messages if m.role == message_pb2.ROLE_USER)
    return [t for t in texts if t.strip()]


def query(messages: Sequence[message_pb2.ChatMessage], recent: int) -> str:
    """The recall query: the last `recent` user messages, at most `MAX_QUERY_CHARS`."""
    texts = user_texts(messages)[-recent:] if recent > 0 else []
    return "\n".join(texts)[-MAX_QUERY_CHARS:]


def entry(memory: Memory) -> str:
    return f'<memory id="{memory.id}">{html.escape(memory.content, quote=False)}</memory>'


def within_budget(found: Iterable[Scored], budget_tokens: int) -> list[Memory]:
    """The best memories whose block fits `budget_tokens`, in rank order (misfits skipped)."""
    chosen: list[Memory] = []
    used = estimate_tokens(HEADER + "\n")
    for scored in found:
        cost = estimate_tokens(entry(scored.memory) + "\n")
        if used + cost <= budget_tokens:
            chosen.append(scored.memory)
            used += cost
    return chosen


def block(memories: Iterable[Memory]) -> str:
    return "\n".join([HEADER, *(entry(m) for m in memories)])
