"""`model: "auto"` and the `auto-router` plugin pick the cheapest model whose context fits
and which honours every parameter, within `allowed_models` and the `provider` filters;
the response names it. Over REST (the openai SDK) and gRPC, against three fake models."""

from __future__ import annotations

from typing import Any

import grpc
import openai
import pytest

from server.providers.base import ALL_PARAMETERS
from server.providers.fake import FakeConfig, FakeProvider
from server.routing.catalog import Endpoint
from server.runtime import app
from server.usage.query import UsageFilter
from server.usage.store import UsageStore
from tests.conftest import StartService, sdk, user_turn
from tests.observability.scrape import scrape, value
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2, parameters_pb2, routing_pb2

LONG = "word " * 400  # ~500 tokens by tokenwire's estimate: more than tiny's context
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def model(name: str, price: float, context: int, supported: frozenset[str]) -> Endpoint:
    provider = FakeProvider(FakeConfig(name=f"fake-{name}", model_id=name, supported=supported))
    return Endpoint(name, provider, name, context, prompt_price=price, completion_price=price)


ENDPOINTS = [
    model("big", 5.0, 100_000, ALL_PARAMETERS),
    model("mid", 1.0, 8_000, ALL_PARAMETERS - {"tools", "tool_choice"}),
    model("tiny", 0.1, 100, ALL_PARAMETERS),
]


async def served(start_service: StartService) -> app.Service:
    return await start_service([e.provider for e in ENDPOINTS], ENDPOINTS)


@pytest.mark.parametrize(
    ("params", "chosen"),
    [
        ({"messages": user_turn("hi")}, "tiny"),  # cheapest
        ({"messages": user_turn(LONG)}, "mid"),  # tiny's context is too small
        ({"messages": user_turn(LONG), "tools": [TOOL]}, "big"),  # mid cannot call tools
        ({"messages": user_turn("hi"), "max_completion_tokens": 200}, "mid"),  # room to answer
        (
            {
                "messages": user_turn("hi"),
                "extra_body": {"plugins": [{"id": "auto-router", "allowed_models": ["b*"]}]},
            },
            "big",
        ),
        (
            {"messages": user_turn("hi"), "extra_body": {"provider": {"ignore": ["fake-tiny"]}}},
            "mid",
        ),
        (
            {"messages": user_turn("hi"), "extra_body": {"provider": {"order": ["fake-big"]}}},
            "big",
        ),
    ],
)
async def test_rest_auto_picks_by_the_rule(
    start_service: StartService, params: dict[str, Any], chosen: str
) -> None:
    service = await served(start_service)
    async with sdk(service) as client:
        completion = await client.chat.completions.create(model="auto", **params)
    assert completion.model == chosen


async def test_the_plugin_alone_overrides_a_named_model(start_service: StartService) -> None:
    service = await served(start_service)
    async with sdk(service) as client:
        completion = await client.chat.completions.create(
            model="big",
            messages=user_turn("hi"),
            extra_body={"plugins": [{"id": "auto-router", "allowed_models": ["mid", "tiny"]}]},
        )
    assert completion.model == "tiny"


async def test_nothing_fits_is_a_400(start_service: StartService) -> None:
    service = await served(start_service)
    async with sdk(service) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="auto",
                messages=user_turn(LONG),
                tools=[TOOL],  # type: ignore[list-item]
                extra_body={"plugins": [{"id": "auto-router", "allowed_models": ["mid"]}]},
            )
    assert caught.value.code == "no_model_fits"


async def test_grpc_auto_streams_from_the_chosen_model(start_service: StartService) -> None:
    service = await served(start_service)
    request = chat_pb2.CreateChatCompletionRequest(
        model="auto",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="hi there")],
        parameters=parameters_pb2.GenerationParameters(
            provider=routing_pb2.ProviderPreferences(max_price=routing_pb2.MaxPrice(prompt=0.05))
        ),
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateChatCompletion(request)  # every model costs more
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        request.parameters.provider.max_price.prompt = 2.0
        call = stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(request=request))
        chunks = [r.chunk async for r in call]
    assert {c.model for c in chunks} == {"tiny"}
    assert "".join(c.choices[0].delta.content for c in chunks) == "hi there "


async def test_usage_records_the_model_asked_for_and_the_one_that_served(
    start_service: StartService,
) -> None:
    service = await served(start_service)
    async with sdk(service) as client:
        await client.chat.completions.create(model="auto", messages=user_turn("hi"))
        await client.chat.completions.create(
            model="big",
            messages=user_turn("hi"),
            extra_body={"plugins": [{"id": "auto-router", "allowed_models": ["mid"]}]},
        )
    request = chat_pb2.CreateChatCompletionRequest(
        model="auto",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text=LONG)],
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stream = chat_pb2_grpc.ChatServiceStub(channel).StreamChatCompletion(
            chat_pb2.StreamChatCompletionRequest(request=request)
        )
        assert {r.chunk.model async for r in stream} == {"mid"}
    assert isinstance(service.usage, UsageStore)
    records = await service.usage.records(UsageFilter(), 10)
    assert sorted((r.model_requested, r.model, r.streamed) for r in records) == [
        ("auto", "mid", True),
        ("auto", "tiny", False),
        ("big", "mid", False),
    ]
    samples = await scrape(service.http_port)  # `auto` is a model of its own on /metrics too
    by_request = {"gen_ai_request_model": "auto", "error_type": ""}
    assert value(samples, "gen_ai_server_request_duration_seconds_count", **by_request) == 2
