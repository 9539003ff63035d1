"""Prompt transforms applied per endpoint before inference.

`middle-out` (OpenRouter's): when the prompt does not fit the model's
context, drop messages from the middle, keeping the system prompt and the
most recent turns. Tokens are estimated (`server.tokens`), so it
leaves a margin rather than counting exactly.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from server import tokens
from server.errors import InvalidRequest
from server.providers.base import Message

KNOWN = frozenset({"middle-out"})
_PER_MESSAGE = 4  # role and separators


def estimate_tokens(messages: Sequence[Message]) -> int:
    return sum(map(_cost, messages))


def check(transforms: Sequence[str]) -> None:
    for i, name in enumerate(transforms):
        if name not in KNOWN:
            raise InvalidRequest(
                f"Unknown transform '{name}'; known: {', '.join(sorted(KNOWN))}.",
                param=f"transforms[{i}]",
            )


def middle_out(messages: Sequence[Message], budget: int) -> tuple[Message, ...]:
    """Drop middle messages until the estimate fits `budget` tokens (never the last one).

    Each drop costs O(log n), not a pass over every message (which made 20k messages take
    minutes): the total is kept as messages go, and orphans are found through their ids."""
    head = [m for m in messages if m.role in ("system", "developer")]
    turns = [m for m in messages if m.role not in ("system", "developer")]
    costs = [_cost(m) for m in turns]
    total = estimate_tokens(head) + sum(costs)
    if len(turns) <= 1 or total <= budget:
        return (*head, *turns)
    kept = _Kept(turns)
    while kept.count > 1 and total > budget:
        middle = kept.nth(min((kept.count - 1) // 2, kept.count - 2))  # never the last
        total -= sum(costs[i] for i in kept.drop(middle))
    return (*head, *(m for m, alive in zip(turns, kept.alive, strict=True) if alive))


def _cost(m: Message) -> int:
    return _PER_MESSAGE + tokens.estimate_tokens(len(m.text()))


class _Kept:
    """The turns still kept: the nth found through a Fenwick tree of the kept ones.

    A tool result whose call was dropped, or a call whose result was, would confuse any model
    (OpenAI refuses both): dropping a message drops those too, until every call has its
    results (the first drop also sweeps out orphans the request came with)."""

    def __init__(self, turns: list[Message]) -> None:
        n = len(turns)
        self.turns = turns
        self.alive = [True] * n
        self.count = n
        self._tree = [i & -i for i in range(n + 1)]  # every turn kept, counted in Fenwick form
        self._top = 1 << (n.bit_length() - 1)
        self._calls: Counter[str | None] = Counter()  # kept calls by id
        self._results: Counter[str | None] = Counter()  # kept tool results by call id
        self._callers: dict[str | None, list[int]] = defaultdict(list)
        self._answers: dict[str | None, list[int]] = defaultdict(list)
        for i, m in enumerate(turns):
            if m.role == "tool":
                self._results[m.tool_call_id] += 1
                self._answers[m.tool_call_id].append(i)
            for c in m.tool_calls:
                self._calls[c.id] += 1
                self._callers[c.id].append(i)
        self._swept = False

    def nth(self, k: int) -> int:
        """The index of the kept turn with `k` kept turns before it."""
        at, step = 0, self._top
        while step:
            if at + step < len(self._tree) and self._tree[at + step] <= k:
                at += step
                k -= self._tree[at]
            step >>= 1
        return at

    def drop(self, first: int) -> list[int]:
        """Drop turn `first` and the orphans that leaves; their indices."""
        dropped: list[int] = []
        queue = [first]
        while queue:
            i = queue.pop()
            if self.alive[i]:
                self._forget(i, queue)
                dropped.append(i)
            if not queue and not self._swept:
                self._swept = True
                queue = [j for j, alive in enumerate(self.alive) if alive and self._orphan(j)]
        return dropped

    def _orphan(self, i: int) -> bool:
        m = self.turns[i]
        return (m.role == "tool" and not self._calls[m.tool_call_id]) or any(
            not self._results[c.id] for c in m.tool_calls
        )

    def _forget(self, i: int, queue: list[int]) -> None:
        self.alive[i] = False
        self.count -= 1
        at = i + 1
        while at < len(self._tree):
            self._tree[at] -= 1
            at += at & -at
        m = self.turns[i]
        if m.role == "tool":
            self._results[m.tool_call_id] -= 1
            if not self._results[m.tool_call_id]:
                queue += self._callers[m.tool_call_id]  # calls left without a result
        for c in m.tool_calls:
            self._calls[c.id] -= 1
            if not self._calls[c.id]:
                queue += self._answers[c.id]  # results left without a call
