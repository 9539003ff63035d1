"""A scripted, deterministic provider for tests and benchmarks.

It answers with a fixed script of events, or by default echoes the last user
message word by word. `delay` paces the deltas; `gate` holds back every
event after the first until the test sets it, so streaming tests synchronise
on events, not sleeps.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from server.errors import TokenwireError
from server.providers import base

ALL_PARAMETERS = base.ALL_PARAMETERS


SEEN = 1000


@dataclass
class FakeConfig:
    name: str = "fake"
    model_id: str = "fake-echo"
    script: Sequence[base.Event] = ()  # empty: echo the last user message
    error: TokenwireError | None = None  # raised before any event
    error_after: int | None = None  # raise `error` after this many deltas instead
    delay: float = 0.0
    gate: asyncio.Event | None = None
    gate_at: int = 1  # the event the gate holds back (0: even the first)
    supported: frozenset[str] = ALL_PARAMETERS
    # The latest requests, for tests; bounded so a long-running fake server does not grow.
    seen: deque[base.GenerationRequest] = field(default_factory=lambda: deque(maxlen=SEEN))
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class FakeProvider:
    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config or FakeConfig()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def supported(self) -> frozenset[str]:
        return self.config.supported

    def models(self) -> tuple[base.ModelCard, ...]:
        return (base.ModelCard(self.config.model_id, owned_by="tokenwire", context_length=8192),)

    async def stream(self, request: base.GenerationRequest) -> AsyncIterator[base.Event]:
        c = self.config
        c.seen.append(request)
        if c.error is not None and c.error_after is None:
            raise c.error
        try:
            for i, event in enumerate(c.script or echo(request)):
                if c.error is not None and i == c.error_after:
                    raise c.error
                if c.gate is not None and i == c.gate_at:
                    await c.gate.wait()
                if c.delay:
                    await asyncio.sleep(c.delay)  # pacing a fake stream, not synchronisation
                yield event
        finally:
            c.closed.set()

    async def aclose(self) -> None:
        pass


def echo(request: base.GenerationRequest) -> list[base.Event]:
    """The last user message back, one word per delta, for each of `n` choices."""
    last = next((m.text() for m in reversed(request.messages) if m.role == "user"), "")
    words = [w + " " for w in last.split()] or [""]
    limit = request.max_tokens or len(words)
    finish = base.FinishReason.LENGTH if limit < len(words) else base.FinishReason.STOP
    out: list[base.Event] = []
    for choice in range(request.n):
        out.extend(base.Delta(content=w, choice=choice) for w in words[:limit])
        out.append(base.Delta(finish_reason=finish, choice=choice))
    prompt = sum(len(m.text().split()) for m in request.messages)
    out.append(base.Usage(prompt, completion_tokens=request.n * min(limit, len(words))))
    return out
