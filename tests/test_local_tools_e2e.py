"""Tool calls on the real default local model end to end: the openai SDK (whole and streamed)
and gRPC, every response checked against the official OpenAI schemas."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import jsonschema
import openai
import pytest
from openai.types.chat import (
    ChatCompletionMessageParam,
    ChatCompletionToolMessageParam,
    ChatCompletionToolUnionParam,
)

from server.runtime import app
from server.runtime.config import Config
from tests.conftest import sdk, user_turn
from tests.openai_schema import validate
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2, parameters_pb2

pytestmark = pytest.mark.local_model

MODEL = "smollm2-135m-instruct"
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 24},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}
ADD = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
SCHEMAS: dict[str, dict[str, Any]] = {"get_weather": WEATHER, "add": ADD}
TOOLS: list[ChatCompletionToolUnionParam] = [
    {
        "type": "function",
        "function": {"name": name, "description": f"{name} tool", "parameters": schema},
    }
    for name, schema in SCHEMAS.items()
]
QUESTION_TEXT = "What is the weather in Paris?"
QUESTION = user_turn(QUESTION_TEXT)


@pytest.fixture(scope="module")
async def local_service() -> AsyncIterator[app.Service]:
    config = Config(
        host="127.0.0.1", http_port=0, grpc_port=0, grace=2.0, n_ctx=2048,
        database_url="sqlite://:memory:",
    )  # fmt: skip
    service = await app.start(config)
    yield service
    await service.stop()


@pytest.fixture
async def client(local_service: app.Service) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk(local_service) as c:
        yield c


def check_arguments(name: str, arguments: str) -> None:
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


async def test_required_returns_calls_that_fit_the_schemas(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=QUESTION, tools=TOOLS, tool_choice="required", temperature=0
    )
    body = raw.http_response.json()
    validate("CreateChatCompletionResponse", body)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert "dropped_parameters" not in body or not body["dropped_parameters"]
    calls = choice["message"]["tool_calls"]
    assert calls and all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    for call in calls:
        check_arguments(call["function"]["name"], call["function"]["arguments"])


async def test_a_named_function_streams_as_openai_streams_calls(
    client: openai.AsyncOpenAI, local_service: app.Service
) -> None:
    stream = await client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=QUESTION,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "add"}},
        parallel_tool_calls=False,
        temperature=0,
        stream=True,
    )
    lines = [line async for line in stream.http_response.aiter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    pieces = [t for c in chunks for t in c["choices"][0]["delta"].get("tool_calls", [])]
    first, rest = pieces[0], pieces[1:]
    assert first["index"] == 0 and first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"]["name"] == "add"
    assert rest and all("id" not in p and "name" not in p["function"] for p in rest)
    assert {p["index"] for p in pieces} == {0}  # parallel_tool_calls false: one call
    arguments = "".join(p["function"].get("arguments", "") for p in pieces)
    check_arguments("add", arguments)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_auto_over_grpc_and_the_sdk_agree(
    client: openai.AsyncOpenAI, local_service: app.Service
) -> None:
    # This small model answers in text when it may choose; "<" biased up makes it call.
    sdk_answer = await client.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=TOOLS, temperature=0, logit_bias={"44": 100}
    )
    call = sdk_answer.choices[0].message.tool_calls
    assert call and sdk_answer.choices[0].finish_reason == "tool_calls"
    request = chat_pb2.CreateChatCompletionRequest(
        model=MODEL,
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text=QUESTION_TEXT)],
        parameters=parameters_pb2.GenerationParameters(
            tools=[
                message_pb2.Tool(
                    type=message_pb2.TOOL_TYPE_FUNCTION,
                    function=message_pb2.FunctionDefinition(
                        name=name, parameters=json.dumps(schema)
                    ),
                )
                for name, schema in SCHEMAS.items()
            ],
            tool_choice_mode=message_pb2.TOOL_CHOICE_MODE_AUTO,
            temperature=0,
            logit_bias={"44": 100.0},
        ),
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{local_service.grpc_port}") as channel:
        unary = await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(request)
    (choice,) = unary.choices
    assert choice.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    grpc_calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls]
    sdk_calls = [(c.function.name, c.function.arguments) for c in call]  # type: ignore[union-attr]
    assert grpc_calls == sdk_calls
    for name, arguments in grpc_calls:
        check_arguments(name, arguments)


async def test_a_tool_result_round_trip(client: openai.AsyncOpenAI) -> None:
    first = await client.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=TOOLS, tool_choice="required", temperature=0
    )
    calls = first.choices[0].message.tool_calls
    assert calls
    results: list[ChatCompletionToolMessageParam] = [
        {"role": "tool", "tool_call_id": c.id, "content": "22 C and sunny"} for c in calls
    ]
    history: list[ChatCompletionMessageParam] = [
        *QUESTION,
        first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
        *results,
    ]
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=history, tools=TOOLS, temperature=0, max_tokens=64
    )
    body = raw.http_response.json()
    validate("CreateChatCompletionResponse", body)
    assert first.usage is not None and body["usage"]["prompt_tokens"] > first.usage.prompt_tokens
    choice = body["choices"][0]
    for call in choice["message"].get("tool_calls") or []:  # the model may call again
        check_arguments(call["function"]["name"], call["function"]["arguments"])


async def test_a_schema_the_grammar_cannot_express_is_a_400_naming_the_tool(
    client: openai.AsyncOpenAI,
) -> None:
    odd: ChatCompletionToolUnionParam = {
        "type": "function",
        "function": {
            "name": "odd",
            "parameters": {"type": "object", "properties": {"x": {"not": {}}}},
        },
    }
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model=MODEL, messages=QUESTION, tools=[*TOOLS, odd], tool_choice="required"
        )
    validate("ErrorResponse", caught.value.response.json())
    assert "tool 'odd'" in caught.value.message
    assert caught.value.param == "tools[2].function.parameters"
