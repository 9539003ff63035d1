"""A conversation's next turn reuses the KV cache of the history it resends, even after
other conversations ran in between (the real SmolLM2 model)."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

from server.providers.base import Delta, GenerationRequest, Message, Usage
from server.providers.llama.models import SMOLLM2, LocalModel
from server.providers.llama.provider import LocalConfig, LocalProvider

pytestmark = pytest.mark.local_model

MODEL = LocalModel(SMOLLM2, bundled=SMOLLM2, n_ctx=1024)


async def turn(
    provider: LocalProvider, history: list[Message], question: str, seed: int | None = None
) -> Usage:
    """Ask `question` in the conversation `history`, which then holds question and answer."""
    history.append(Message(role="user", content=question))
    request = GenerationRequest(
        model=SMOLLM2, messages=tuple(history), temperature=0, max_tokens=12, seed=seed
    )
    events = [e async for e in provider.stream(request)]
    answer = "".join(e.content for e in events if isinstance(e, Delta))
    history.append(Message(role="assistant", content=answer))
    usage = events[-1]
    assert isinstance(usage, Usage)
    return usage


async def conversations(prefix_cache: int) -> list[Usage]:
    """Two conversations taking turns; the usage of each turn of the first."""
    provider = await LocalProvider.load(LocalConfig(models=(MODEL,), prefix_cache=prefix_cache))
    cats: list[Message] = []
    dogs: list[Message] = []
    usages = []
    try:
        for n in range(3):
            usages.append(await turn(provider, cats, f"Say one thing about cats ({n})."))
            await turn(provider, dogs, f"Name a dog breed ({n}).")
        usages.append(await turn(provider, cats, "Thanks.", seed=1))
    finally:
        await provider.aclose()
    return usages


async def test_the_history_is_not_read_again_after_another_conversation() -> None:
    usages = await conversations(prefix_cache=64 << 20)
    first, second, third, seeded = usages
    # Each turn resends the last one's prompt and answer: all of it was kept, despite the
    # other conversation's turn in between.
    assert second.cached_tokens >= first.prompt_tokens
    assert third.cached_tokens >= second.prompt_tokens
    assert third.cached_tokens < third.prompt_tokens
    assert seeded.cached_tokens == 0  # same seed, same text: its prompt is read afresh


async def test_without_the_cache_every_prompt_is_read_whole() -> None:
    usages = await conversations(prefix_cache=0)
    assert [u.cached_tokens for u in usages] == [0, 0, 0, 0]
