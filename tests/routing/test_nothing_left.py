"""Preferences that leave no provider: a 400 saying which preference left out which endpoint.

No provider was asked, so no provider is unavailable: it is the request's own choice,
and the caller needs to know which preference to relax. Over gRPC it is INVALID_ARGUMENT.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from server.errors import InvalidRequest, NotFound, UnsupportedParameter
from server.providers.fake import FakeProvider
from tests.conftest import StartService
from tests.routing.test_routing import ABC, ask, endpoint, plan
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2, parameters_pb2, routing_pb2

DENY = routing_pb2.DATA_COLLECTION_DENY
PRICE = routing_pb2.MaxPrice(prompt=1.0)
EXCLUDING: dict[str, tuple[dict[str, Any], str]] = {
    "only": ({"only": ["nobody"]}, "only"),
    "ignore": ({"ignore": ["a", "b", "c"]}, "ignore"),
    "quantizations": ({"quantizations": ["fp8"]}, "quantizations"),
    "data_collection": ({"data_collection": DENY}, "data_collection"),
    "zdr": ({"zdr": True}, "zdr"),
    "max_price": ({"max_price": PRICE}, "max_price"),
}
# Each endpoint fails every filter but `only`/`ignore`: it keeps data, retains it, costs more.
COSTLY = [
    endpoint(n, data_collection="allow", zdr=False, prompt_price=5.0, quantization="int4")
    for n in "abc"
]


@pytest.mark.parametrize(("prefs", "named"), EXCLUDING.values(), ids=EXCLUDING.keys())
def test_each_excluding_preference_is_named(prefs: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        plan(COSTLY, ask(**prefs))
    error = caught.value
    assert (error.http_status, error.code) == (400, "no_allowed_providers")
    assert error.param == f"provider.{named}"
    for name in "abc":
        assert f"{name} (m) by provider.{named}" in error.message


def test_each_endpoint_names_the_preference_that_left_it_out() -> None:
    catalog = [endpoint("a"), endpoint("b", zdr=False), endpoint("c", zdr=True, prompt_price=9.0)]
    with pytest.raises(InvalidRequest) as caught:
        plan(catalog, ask(ignore=["a"], zdr=True, max_price=PRICE))
    message = caught.value.message
    assert "a (m) by provider.ignore" in message
    assert "b (m) by provider.zdr" in message
    assert "c (m) by provider.max_price" in message


def test_require_parameters_alone_still_names_the_parameter() -> None:
    tools = (message_pb2.Tool(function=message_pb2.FunctionDefinition(name="f")),)
    catalog = [endpoint("a", supported=frozenset())]
    with pytest.raises(UnsupportedParameter) as caught:
        plan(catalog, ask(tools=tools, require_parameters=True))
    assert caught.value.param == "tools"


def test_require_parameters_and_a_filter_are_both_named() -> None:
    tools = (message_pb2.Tool(function=message_pb2.FunctionDefinition(name="f")),)
    catalog = [endpoint("a", supported=frozenset(), zdr=True), endpoint("b", zdr=False)]
    with pytest.raises(InvalidRequest) as caught:
        plan(catalog, ask(tools=tools, require_parameters=True, zdr=True))
    assert "a (m) by provider.require_parameters: it cannot honour tools" in caught.value.message
    assert "b (m) by provider.zdr" in caught.value.message


def test_an_unknown_model_stays_404() -> None:
    with pytest.raises(NotFound):
        plan(ABC, ask("nope", only=["nobody"]))


async def test_grpc_says_invalid_argument(start_service: StartService) -> None:
    service = await start_service([FakeProvider()])
    request = chat_pb2.CreateChatCompletionRequest(
        model="fake-echo",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="hi")],
        parameters=parameters_pb2.GenerationParameters(
            provider=routing_pb2.ProviderPreferences(only=["nobody"])
        ),
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "fake (fake-echo) by provider.only" in (caught.value.details() or "")
