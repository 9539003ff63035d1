"""Raw-JSON fields (tool parameters, json_schema.schema) nested too deep: 400 naming the field.

Python's JSON parser fails near 1,000 levels with RecursionError, which was a 500 /
INTERNAL; a depth limit checked before parsing refuses such input by name, over gRPC
and over REST (where the gateway also re-encodes the field).
"""

from __future__ import annotations

import grpc
import httpx
import pytest

from server.pipeline.convert import MAX_JSON_DEPTH, json_depth
from server.runtime import app
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2, parameters_pb2

PARAM = "tools[0].function.parameters"


def nested(depth: int) -> str:
    """A JSON object whose brackets nest `depth` levels deep."""
    inner = depth - 1
    return '{"a":' + "[" * inner + "]" * inner + "}"


def request(parameters: str) -> chat_pb2.CreateChatCompletionRequest:
    function = message_pb2.FunctionDefinition(name="f", parameters=parameters)
    return chat_pb2.CreateChatCompletionRequest(
        model="fake-echo",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="hi")],
        parameters=parameters_pb2.GenerationParameters(tools=[message_pb2.Tool(function=function)]),
    )


def test_depth_counts_brackets_outside_strings() -> None:
    assert json_depth(nested(5)) == 5
    assert json_depth('{"a": "[[[[\\"{{", "b": [1, {"c": []}]}') == 4
    assert json_depth("") == 0


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 990, 5000])
async def test_grpc_refuses_deep_tool_parameters(channel: grpc.aio.Channel, depth: int) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateChatCompletion(request(nested(depth)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert PARAM in (caught.value.details() or "")


async def test_grpc_refuses_a_deep_json_schema(channel: grpc.aio.Channel) -> None:
    fmt = message_pb2.ResponseFormat(
        type=message_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        json_schema=message_pb2.JsonSchema(name="s", schema=nested(990)),
    )
    r = request("")
    r.parameters.ClearField("tools")
    r.parameters.response_format.CopyFrom(fmt)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(r)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "response_format.json_schema.schema" in (caught.value.details() or "")


async def test_grpc_accepts_parameters_at_the_limit(channel: grpc.aio.Channel) -> None:
    response = await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(
        request(nested(MAX_JSON_DEPTH))
    )
    assert response.choices[0].message.content == "hi "


async def rest(service: app.Service, depth: int) -> httpx.Response:
    # Written by hand: json.dumps itself cannot encode 990 levels.
    function = f'{{"name": "f", "parameters": {nested(depth)}}}'
    body = (
        '{"model": "fake-echo", "messages": [{"role": "user", "content": "hi"}], '
        f'"tools": [{{"type": "function", "function": {function}}}]}}'
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as http:
        return await http.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )


async def test_rest_names_the_field_nested_too_deep(service: app.Service) -> None:
    response = await rest(service, MAX_JSON_DEPTH + 1)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == PARAM and PARAM in error["message"]


async def test_rest_refuses_json_too_deep_for_the_parser(service: app.Service) -> None:
    response = await rest(service, 990)  # the gateway's own body limit may say it first
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
