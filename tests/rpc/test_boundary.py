"""Around every gRPC call: malformed request bytes, and calls still running past the grace period.

A real grpc.aio server on port 0 called over a raw channel with bytes that are no
protobuf message: INVALID_ARGUMENT with a message saying so, on every service. A
stop whose grace period runs out ends the calls still running with UNAVAILABLE
saying the server is shutting down.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from server.providers.fake import FakeConfig, FakeProvider
from server.runtime import app
from server.runtime.config import Config
from tests.routing.test_fallback import grpc_error_info
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2

GARBAGE = b"\xff\xff\xff\xff\x0f"  # a field tag whose varint never ends
UNARY = [
    "/tokenwire.chat.v1.ChatService/CreateChatCompletion",
    "/tokenwire.chat.v1.ModelService/ListModels",
    "/tokenwire.admin.v1.AdminService/ListKeys",
    "/grpc.health.v1.Health/Check",
]
STREAMING = [
    "/tokenwire.chat.v1.ChatService/StreamChatCompletion",
    "/grpc.health.v1.Health/Watch",
]


def raw_unary(
    channel: grpc.aio.Channel, method: str
) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    """A call sending and receiving bytes as they are: no (de)serializer."""
    return channel.unary_unary(method, None, None)


@pytest.mark.parametrize("method", UNARY)
async def test_malformed_unary_request_is_invalid_argument(
    channel: grpc.aio.Channel, method: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_unary(channel, method)(GARBAGE)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid protobuf message" in (caught.value.details() or "")


@pytest.mark.parametrize("method", STREAMING)
async def test_malformed_streaming_request_is_invalid_argument(
    channel: grpc.aio.Channel, method: str
) -> None:
    call = channel.unary_stream(method, None, None)(GARBAGE)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid protobuf message" in (caught.value.details() or "")


async def test_the_status_carries_error_info(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_unary(channel, UNARY[0])(GARBAGE)
    info = grpc_error_info(caught.value)
    assert (info.metadata["http_status"], info.metadata["type"]) == ("400", "invalid_request_error")


async def test_a_well_formed_request_still_works(channel: grpc.aio.Channel) -> None:
    request = chat_pb2.CreateChatCompletionRequest(
        model="fake-echo",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="hi")],
    )
    raw = await raw_unary(channel, UNARY[0])(request.SerializeToString())
    assert chat_pb2.CreateChatCompletionResponse.FromString(raw).choices[0].message.content


# --- a stop past the grace period -------------------------------------------------------------

GRACE = 0.3


@pytest.fixture
async def held() -> AsyncIterator[tuple[app.Service, FakeProvider]]:
    """tokenwire whose provider sends its first event, then holds the rest forever."""
    provider = FakeProvider(FakeConfig(gate=asyncio.Event()))
    config = Config(
        host="127.0.0.1", http_port=0, grpc_port=0, grace=GRACE, database_url="sqlite://:memory:"
    )
    service = await app.start(config, [provider])
    yield service, provider
    if not service.http_task.done():  # the test failed before stopping it
        await service.stop()


def ask(text: str) -> chat_pb2.CreateChatCompletionRequest:
    return chat_pb2.CreateChatCompletionRequest(
        model="fake-echo",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text=text)],
    )


async def test_streams_past_the_grace_period_end_unavailable(
    held: tuple[app.Service, FakeProvider],
) -> None:
    service, provider = held
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        call = stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(request=ask("a b")))
        chunks = aiter(call)
        assert (await anext(chunks)).chunk.choices[0].delta.role == message_pb2.ROLE_ASSISTANT
        stopping = asyncio.ensure_future(service.stop())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(anext(chunks), timeout=10)
        await asyncio.wait_for(stopping, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (caught.value.details() or "")
    assert grpc_error_info(caught.value).reason == "server_shutting_down"
    assert provider.config.closed.is_set()  # the provider was stopped, not left running


async def test_unary_calls_past_the_grace_period_end_unavailable(
    held: tuple[app.Service, FakeProvider],
) -> None:
    service, provider = held
    provider.config.gate_at = 0  # not even the first event
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        call = chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(ask("a"))
        for _ in range(1000):  # bounded: until the provider holds the request
            if provider.config.seen:
                break
            await asyncio.sleep(0.001)
        stopping = asyncio.ensure_future(service.stop())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(call, timeout=10)
        await asyncio.wait_for(stopping, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (caught.value.details() or "")
