"""Tool calls on the real default local model (SmolLM2-135M-Instruct), enforced by grammar."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest

pytest.importorskip("llama_cpp")

from llama_cpp import Llama

from server.errors import InvalidRequest
from server.providers.base import (
    Delta,
    FinishReason,
    GenerationRequest,
    Message,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from server.providers.llama import models as llama_models
from server.providers.llama.models import SMOLLM2, LocalModel
from server.providers.llama.prompt import ChatPrompter
from server.providers.llama.provider import LocalConfig, LocalProvider
from server.providers.llama.tool_calls import CallReader
from server.providers.llama.tools import plan_tools
from server.providers.llama.vocab import Vocab

pytestmark = pytest.mark.local_model

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}
ADD_SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
WEATHER = Tool("get_weather", "Get the current weather in a city", json.dumps(WEATHER_SCHEMA))
ADD = Tool("add", "Add two integers", json.dumps(ADD_SCHEMA))
SCHEMAS: dict[str, dict[str, Any]] = {"get_weather": WEATHER_SCHEMA, "add": ADD_SCHEMA}
LESS_THAN = 44  # SmolLM2's token for "<": a call's first character
MODEL = LocalModel(SMOLLM2, bundled=SMOLLM2, n_ctx=2048)


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[LocalProvider]:
    local = await LocalProvider.load(LocalConfig(models=(MODEL,)))
    yield local
    await local.aclose()


def ask(question: str, choice: ToolChoice | None, **params: Any) -> GenerationRequest:
    return GenerationRequest(
        model=SMOLLM2,
        messages=(Message(role="user", content=question),),
        tools=(WEATHER, ADD),
        tool_choice=choice,
        **{"temperature": 0, "max_tokens": 96, **params},
    )


async def deltas(provider: LocalProvider, request: GenerationRequest) -> list[Delta]:
    events = [e async for e in provider.stream(request)]
    assert isinstance(events[-1], Usage)
    return [e for e in events if isinstance(e, Delta)]


def calls_in(stream: list[Delta]) -> list[ToolCall]:
    """The calls as a client assembles them, checking OpenAI's streaming shape on the way."""
    pieces = [t for d in stream for t in d.tool_calls]
    calls: list[ToolCall] = []
    for piece in pieces:
        if piece.id is not None:  # a call's first delta: index, id and name
            assert piece.index == len(calls) and piece.name and piece.id.startswith("call_")
            calls.append(ToolCall(piece.id, piece.name, piece.arguments))
        else:
            assert piece.name is None and piece.index == len(calls) - 1
            last = calls[-1]
            calls[-1] = ToolCall(last.id, last.name, last.arguments + piece.arguments)
    assert len({c.id for c in calls}) == len(calls)
    return calls


def assert_valid(call: ToolCall) -> dict[str, Any]:
    arguments = json.loads(call.arguments)
    jsonschema.validate(arguments, SCHEMAS[call.name])
    return dict(arguments)


async def test_required_makes_a_call_whose_arguments_fit_the_schema(
    provider: LocalProvider,
) -> None:
    stream = await deltas(provider, ask("What is the weather in Paris?", ToolChoice("required")))
    calls = calls_in(stream)
    assert calls and stream[-1].finish_reason == FinishReason.TOOL_CALLS
    assert "".join(d.content for d in stream) == ""
    for call in calls:
        assert_valid(call)
    assert len([t for d in stream for t in d.tool_calls if t.arguments]) > 1  # in pieces


async def test_a_named_function_is_the_one_called(provider: LocalProvider) -> None:
    request = ask("What is the weather in Paris?", ToolChoice("function", "add"))
    stream = await deltas(provider, request)
    calls = calls_in(stream)
    assert [c.name for c in calls] == ["add"] * len(calls) and calls
    assert set(assert_valid(calls[0])) == {"a", "b"}


async def test_without_parallel_calls_there_is_exactly_one(provider: LocalProvider) -> None:
    question = "What is the weather in Paris, in Rome and in Oslo?"
    request = ask(question, ToolChoice("required"), parallel_tool_calls=False)
    calls = calls_in(await deltas(provider, request))
    assert len(calls) == 1


async def test_auto_answers_in_text_when_the_model_starts_with_text(
    provider: LocalProvider,
) -> None:
    stream = await deltas(provider, ask("Write a haiku about the sea.", ToolChoice("auto")))
    assert not calls_in(stream)
    assert "".join(d.content for d in stream).strip()
    assert stream[-1].finish_reason in (FinishReason.STOP, FinishReason.LENGTH)


async def test_auto_calls_when_the_model_starts_a_call(provider: LocalProvider) -> None:
    # This small model rarely starts a call by itself: a bias on "<" makes it choose one.
    request = ask("Add 2 and 3.", None, logit_bias={LESS_THAN: 100.0})
    stream = await deltas(provider, request)
    calls = calls_in(stream)
    assert calls and stream[-1].finish_reason == FinishReason.TOOL_CALLS
    for call in calls:
        assert_valid(call)


async def test_tool_choice_none_leaves_the_tools_out(provider: LocalProvider) -> None:
    plain = GenerationRequest(
        model=SMOLLM2, messages=(Message(role="user", content="Add 2 and 3."),), max_tokens=4
    )
    none = [e async for e in provider.stream(ask("Add 2 and 3.", ToolChoice("none"), max_tokens=4))]
    alone = [e async for e in provider.stream(plain)]
    assert isinstance(none[-1], Usage) and isinstance(alone[-1], Usage)
    assert none[-1].prompt_tokens == alone[-1].prompt_tokens  # no tool text in the prompt
    assert not any(isinstance(e, Delta) and e.tool_calls for e in none)


ROUND_TRIP = (
    Message(role="user", content="What is the weather in Paris?"),
    Message(
        role="assistant",
        tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Paris"}'),),
    ),
    Message(role="tool", content="22 C and sunny", tool_call_id="call_1"),
)


def test_calls_and_results_go_back_through_the_template() -> None:
    path = llama_models.locate(MODEL, print)
    vocab_only = Llama(model_path=str(path), vocab_only=True, verbose=False)
    rendered = ChatPrompter(vocab_only, Vocab(vocab_only)).render(ROUND_TRIP)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>[\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n]</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n22 C and sunny\n"
        "</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


async def test_a_tool_result_reaches_the_model(provider: LocalProvider) -> None:
    def request(messages: tuple[Message, ...]) -> GenerationRequest:
        return GenerationRequest(
            model=SMOLLM2, messages=messages, tools=(WEATHER, ADD), temperature=0, max_tokens=64
        )

    answered = [e async for e in provider.stream(request(ROUND_TRIP))]
    unanswered = [e async for e in provider.stream(request(ROUND_TRIP[:2]))]
    assert isinstance(answered[-1], Usage) and isinstance(unanswered[-1], Usage)
    # "<|im_start|>user\n<tool_response>\n22 C and sunny\n</tool_response><|im_end|>\n"
    assert answered[-1].prompt_tokens >= unanswered[-1].prompt_tokens + 12
    stream = [e for e in answered if isinstance(e, Delta)]
    # This small model may answer or call again (it often repeats its call); either is whole.
    for call in calls_in(stream):
        assert_valid(call)
    assert stream[-1].finish_reason in (FinishReason.STOP, FinishReason.TOOL_CALLS)


async def test_a_schema_the_grammar_cannot_express_names_the_tool(
    provider: LocalProvider,
) -> None:
    odd = Tool("odd", None, json.dumps({"type": "object", "properties": {"x": {"not": {}}}}))
    request = ask("Hi", ToolChoice("required"))
    request.tools = (WEATHER, odd)
    with pytest.raises(InvalidRequest) as caught:
        await deltas(provider, request)
    assert "tool 'odd'" in caught.value.message
    assert caught.value.param == "tools[1].function.parameters"


# --- pure: the grammar's shape and the streaming reader -----------------------------------


def test_parallel_calls_decide_whether_the_grammar_repeats() -> None:
    several = plan_tools((WEATHER, ADD), ToolChoice("required"), None)
    one = plan_tools((WEATHER, ADD), ToolChoice("required"), False)
    auto = plan_tools((WEATHER, ADD), None, None)
    assert several is not None and one is not None and auto is not None
    assert '(",\\n" call)*' in several.grammar and "call)*" not in one.grammar
    assert several.calls_only and not auto.calls_only and "[^<]" in auto.grammar
    assert plan_tools((WEATHER,), ToolChoice("none"), None) is None
    assert plan_tools((), None, None) is None


CALLS = (
    '<tool_call>[\n{"name": "get_weather", "arguments": {"city": "Pa}\\"ris", "n": [1, {}]}},\n'
    '{"name": "add", "arguments": {"a": 1, "b": 2} }\n]</tool_call>'
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(CALLS)])
def test_calls_are_read_however_the_text_is_cut(size: int) -> None:
    reader = CallReader()
    pieces: list[ToolCallDelta] = []
    for start in range(0, len(CALLS), size):
        pieces += reader.feed(CALLS[start : start + size])
    firsts = [(p.index, p.name) for p in pieces if p.id is not None]
    assert firsts == [(0, "get_weather"), (1, "add")]
    arguments = ["".join(p.arguments for p in pieces if p.index == i) for i in (0, 1)]
    assert json.loads(arguments[0]) == {"city": 'Pa}"ris', "n": [1, {}]}
    assert json.loads(arguments[1]) == {"a": 1, "b": 2}
    assert reader.count == 2
