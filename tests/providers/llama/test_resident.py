"""Several real local models behind one provider: loaded on first use, at most N in memory."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

from server.errors import NotFound
from server.providers.base import GenerationRequest, Message, Usage
from server.providers.llama.models import GEMMA3, SMOLLM2, LocalModel
from server.providers.llama.provider import LocalConfig, LocalProvider

pytestmark = pytest.mark.local_model

MODELS = (
    LocalModel(SMOLLM2, bundled=SMOLLM2, n_ctx=512),
    LocalModel("gemma", bundled=GEMMA3, n_ctx=512, aliases=("g",)),
)


async def ask(provider: LocalProvider, model: str) -> Usage:
    request = GenerationRequest(
        model=model, messages=(Message(role="user", content="Hi"),), max_tokens=2, temperature=0
    )
    events = [e async for e in provider.stream(request)]
    assert isinstance(events[-1], Usage)
    return events[-1]


async def test_models_load_on_first_use_and_the_least_recent_makes_room(
    capfd: pytest.CaptureFixture[str],
) -> None:
    provider = await LocalProvider.load(LocalConfig(models=MODELS, max_resident=1))
    try:
        cards = provider.models()
        assert [(c.id, c.owned_by, c.context_length, c.aliases) for c in cards] == [
            (SMOLLM2, "local", 512, ()),
            ("gemma", "local", 512, ("g",)),
        ]
        assert await provider.resident() == ()
        assert "loading" not in capfd.readouterr().err
        await ask(provider, SMOLLM2)
        assert await provider.resident() == (SMOLLM2,)
        assert f"tokenwire local: loading {SMOLLM2} from " in capfd.readouterr().err
        await ask(provider, "gemma")
        assert await provider.resident() == ("gemma",)
        assert "loading gemma from " in capfd.readouterr().err
        await ask(provider, "gemma")
        assert "loading" not in capfd.readouterr().err  # still there: not loaded again
    finally:
        await provider.aclose()


async def test_two_stay_resident_when_allowed() -> None:
    provider = await LocalProvider.load(LocalConfig(models=MODELS, max_resident=2))
    try:
        smol = await ask(provider, SMOLLM2)
        gemma = await ask(provider, "gemma")
        assert smol.prompt_tokens != gemma.prompt_tokens  # two tokenizers, two templates
        await ask(provider, SMOLLM2)
        assert await provider.resident() == ("gemma", SMOLLM2)
        with pytest.raises(NotFound, match="'nope'"):
            await ask(provider, "nope")
    finally:
        await provider.aclose()


async def test_at_least_one_model_must_fit() -> None:
    with pytest.raises(ValueError, match="at least one local model"):
        await LocalProvider.load(LocalConfig(models=MODELS, max_resident=0))
