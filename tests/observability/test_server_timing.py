"""Where a request's time went: `Server-Timing` on REST, trailing metadata on gRPC."""

from __future__ import annotations

import re

import grpc

from server.providers.base import Delta, Usage
from server.providers.fake import FakeConfig, FakeProvider
from tests.conftest import StartService, sdk, user_turn
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2

TIMING = re.compile(r"upstream;dur=(\d+\.\d+), overhead;dur=(\d+\.\d+)")
SCRIPT = (Delta(content="one"), Usage(3, 1))


def durations(header: str) -> tuple[float, float]:
    found = TIMING.fullmatch(header)
    assert found, header
    return float(found.group(1)), float(found.group(2))


async def test_rest_answer_says_upstream_and_overhead(start_service: StartService) -> None:
    slow = FakeProvider(FakeConfig(script=SCRIPT, delay=0.05))  # 50 ms per event upstream
    service = await start_service([slow])
    async with sdk(service) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="fake-echo", messages=user_turn("hi")
        )
    upstream, overhead = durations(raw.headers["server-timing"])
    assert upstream >= 50 and 0 < overhead < upstream


async def test_grpc_calls_carry_it_as_trailing_metadata(start_service: StartService) -> None:
    service = await start_service([FakeProvider(FakeConfig(script=SCRIPT))])
    request = chat_pb2.CreateChatCompletionRequest(
        model="fake-echo",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="hi")],
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        call = stub.CreateChatCompletion(request)
        await call
        durations(dict(await call.trailing_metadata())["server-timing"])  # type: ignore[arg-type]
        stream = stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(request=request))
        assert [m async for m in stream]
        durations(dict(await stream.trailing_metadata())["server-timing"])  # type: ignore[arg-type]
