"""The loop guard: when an agent's loop must stop, and why.

Checked before each model call (`max_steps`, `timeout`, `budget`) and before
running the tool calls a model asked for (`max_tool_calls`, `repeated_call`:
the same tool with the same arguments asked for `max_repeated_calls` times).
The loop then answers with the best answer so far and says which one stopped it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tokenwire.agents.v1 import agents_pb2
from tokenwire.chat.v1 import message_pb2


@dataclass(frozen=True, slots=True)
class Limits:
    max_steps: int = 10
    max_tool_calls: int = 50
    timeout: float = 120.0
    max_tokens: int | None = None
    max_cost: float | None = None
    max_repeated_calls: int = 3
    tool_timeout: float = 30.0

    @classmethod
    def of(cls, limits: agents_pb2.AgentLimits) -> Limits:
        """The agent's limits, defaults where it sets none."""
        given = {f.name: v for f, v in limits.ListFields()}
        renamed = {"timeout_seconds": "timeout", "max_cost_usd": "max_cost"}
        renamed["tool_timeout_seconds"] = "tool_timeout"
        return cls(**{renamed.get(k, k): v for k, v in given.items()})


class LoopGuard:
    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._started = clock()
        self.steps = 0
        self.tool_calls = 0
        self.tokens = 0
        self.cost = 0.0
        self._seen: Counter[tuple[str, str]] = Counter()
        self.expired = False  # a tool call ran out the wall-clock budget

    def remaining(self) -> float:
        """Seconds left of the run's wall-clock budget."""
        return self.limits.timeout - (self._clock() - self._started)

    def before_step(self) -> str | None:
        """Why the next model call must not be made, or None."""
        if self.steps >= self.limits.max_steps:
            return "max_steps"
        if self.expired or self.remaining() <= 0:
            return "timeout"
        over_tokens = self.limits.max_tokens is not None and self.tokens >= self.limits.max_tokens
        over_cost = self.limits.max_cost is not None and self.cost >= self.limits.max_cost
        return "budget" if over_tokens or over_cost else None

    def stepped(self, tokens: int, cost: float) -> None:
        self.steps += 1
        self.tokens += tokens
        self.cost += cost

    def before_calls(self, calls: Sequence[message_pb2.ToolCall]) -> str | None:
        """Why these tool calls must not run, or None (then they count as run)."""
        if self.tool_calls + len(calls) > self.limits.max_tool_calls:
            return "max_tool_calls"
        keys = [(c.function.name, canonical(c.function.arguments)) for c in calls]
        self._seen.update(keys)
        if any(self._seen[k] >= self.limits.max_repeated_calls for k in keys):
            return "repeated_call"
        self.tool_calls += len(calls)
        return None


def canonical(arguments: str) -> str:
    """Arguments as comparable text: the same JSON however it is spaced or ordered."""
    try:
        return json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return arguments
