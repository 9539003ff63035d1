"""The real grpc.aio server on port 0 with the fake provider, called through generated stubs."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from server.errors import RateLimited
from server.providers import base
from server.providers.fake import FakeConfig, FakeProvider
from tests.chat_requests import chat_request
from tests.conftest import StartService
from tokenwire.chat.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    message_pb2,
    models_pb2,
    models_pb2_grpc,
    routing_pb2,
)


def ask(text: str, **params: object) -> chat_pb2.CreateChatCompletionRequest:
    return chat_request("fake-echo", text, **params)


async def test_unary_answers_with_usage(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    response = await stub.CreateChatCompletion(ask("hello grpc world"))
    assert response.object == "chat.completion"
    assert response.provider == "fake"
    assert response.choices[0].message.content == "hello grpc world "
    assert response.choices[0].finish_reason == chat_pb2.FINISH_REASON_STOP
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (3, 3)
    assert response.usage.total_tokens == 6


async def test_stream_yields_role_then_deltas_then_usage(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    request = ask("one two", stream_options=message_pb2.StreamOptions(include_usage=True))
    chunks = [
        r.chunk
        async for r in stub.StreamChatCompletion(
            chat_pb2.StreamChatCompletionRequest(request=request)
        )
    ]
    assert chunks[0].choices[0].delta.role == message_pb2.ROLE_ASSISTANT
    text = "".join(c.choices[0].delta.content for c in chunks if c.choices)
    assert text == "one two "
    assert chunks[-2].choices[0].finish_reason == chat_pb2.FINISH_REASON_STOP
    assert not chunks[-1].choices and chunks[-1].usage.completion_tokens == 2
    assert len({c.id for c in chunks}) == 1


async def test_unary_and_stream_agree(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    whole = await stub.CreateChatCompletion(ask("same answer please", seed=7))
    chunks = stub.StreamChatCompletion(
        chat_pb2.StreamChatCompletionRequest(request=ask("same answer please", seed=7))
    )
    streamed = "".join([r.chunk.choices[0].delta.content async for r in chunks if r.chunk.choices])
    assert streamed == whole.choices[0].message.content


async def test_invalid_argument_carries_error_info(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateChatCompletion(ask("x", temperature=3.5))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = _error_info(caught.value)
    assert info.metadata["param"] == "temperature"
    assert info.metadata["http_status"] == "400"


async def test_unknown_model_is_not_found(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    request = ask("x")
    request.model = "no-such-model"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateChatCompletion(request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in (caught.value.details() or "")
    assert _error_info(caught.value).reason == "model_not_found"


async def test_unimplemented_parameter_is_refused_by_name(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        preferences = routing_pb2.ProviderPreferences(enforce_distillable_text=True)
        await stub.CreateChatCompletion(ask("x", provider=preferences))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _error_info(caught.value).metadata["param"] == "provider.enforce_distillable_text"


async def test_stream_error_before_first_chunk_is_a_status(start_service: StartService) -> None:
    provider = FakeProvider(FakeConfig(error=RateLimited("slow down", retry_after=3)))
    service = await start_service([provider])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        call = stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(request=ask("x")))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _error_info(caught.value).metadata["retry_after"] == "3"


async def test_dropped_parameters_are_reported(start_service: StartService) -> None:
    provider = FakeProvider(FakeConfig(supported=frozenset({"temperature"})))
    service = await start_service([provider])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        response = await stub.CreateChatCompletion(ask("x", temperature=0.5, seed=1, top_p=0.5))
        assert list(response.dropped_parameters) == ["top_p", "seed"]
        strict = ask("x", seed=1)
        strict.parameters.provider.require_parameters = True
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateChatCompletion(strict)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _error_info(caught.value).metadata["param"] == "seed"
    seen = provider.config.seen[0]
    assert (seen.seed, seen.top_p, seen.temperature) == (None, None, 0.5)


async def test_models_list_and_get(channel: grpc.aio.Channel) -> None:
    stub = models_pb2_grpc.ModelServiceStub(channel)
    listed = await stub.ListModels(models_pb2.ListModelsRequest())
    assert [m.id for m in listed.data] == ["fake-echo"]
    assert listed.data[0].created > 1_600_000_000
    got = await stub.GetModel(models_pb2.GetModelRequest(model="fake/fake-echo"))
    assert got.model.provider == "fake"


async def test_health_and_reflection(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    status = await health.Check(
        health_pb2.HealthCheckRequest(service="tokenwire.chat.v1.ChatService")
    )
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = [r async for r in stub.ServerReflectionInfo(iter([request]))]
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"tokenwire.chat.v1.ChatService", "tokenwire.chat.v1.ModelService"} <= names


async def test_scripted_tool_call_is_assembled(start_service: StartService) -> None:
    script: list[base.Delta | base.Usage] = [
        base.Delta(tool_calls=(base.ToolCallDelta(0, id="call_1", name="get_weather"),)),
        base.Delta(tool_calls=(base.ToolCallDelta(0, arguments='{"city":'),)),
        base.Delta(
            tool_calls=(base.ToolCallDelta(0, arguments='"Paris"}'),),
            finish_reason=base.FinishReason.TOOL_CALLS,
        ),
        base.Usage(5, 3),
    ]
    service = await start_service([FakeProvider(FakeConfig(script=script))])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        response = await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(ask("x"))
    message = response.choices[0].message
    assert not message.HasField("content")
    assert message.tool_calls[0].id == "call_1"
    assert message.tool_calls[0].function.arguments == '{"city":"Paris"}'
    assert response.choices[0].finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "the status carries no details"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info
