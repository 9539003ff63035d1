"""A stop's grace period, over REST and gRPC alike: calls still running when it ends are cut
off then (a fractional --grace included), and recorded as 503 server_shutting_down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from server.pipeline.context import InProcessSink
from server.providers.fake import FakeConfig, FakeProvider
from server.runtime import app
from server.runtime.config import Config
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2

GRACE = 1.6  # uvicorn took whole seconds: it cut REST streams off after ~1.1 s
BODY = {"model": "fake-echo", "messages": [{"role": "user", "content": "a b c"}], "stream": True}


async def until_cut_off(lines: AsyncIterator[str]) -> float:
    async for _ in lines:
        pass
    return time.monotonic()


async def until_unavailable(chunks: AsyncIterator[chat_pb2.StreamChatCompletionResponse]) -> float:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in chunks:
            pass
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    return time.monotonic()


async def test_calls_past_a_fractional_grace_end_together_as_503s() -> None:
    provider = FakeProvider(FakeConfig(gate=asyncio.Event()))  # one event, then held
    usage = InProcessSink()
    config = Config(
        host="127.0.0.1", http_port=0, grpc_port=0, grace=GRACE, database_url="sqlite://:memory:"
    )
    service = await app.start(config, [provider], usage=usage)
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel,
            http.stream("POST", "/v1/chat/completions", json=BODY) as sse,
        ):
            lines = sse.aiter_lines()
            assert (await anext(lines)).startswith("data: {")
            ask = message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="a b c")
            request = chat_pb2.CreateChatCompletionRequest(model="fake-echo", messages=[ask])
            chunks = aiter(
                chat_pb2_grpc.ChatServiceStub(channel).StreamChatCompletion(
                    chat_pb2.StreamChatCompletionRequest(request=request)
                )
            )
            await anext(chunks)
            whole = {**BODY, "stream": False}
            unary_rest = asyncio.ensure_future(http.post("/v1/chat/completions", json=whole))
            unary_rpc = asyncio.ensure_future(
                chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(request)
            )
            for _ in range(1000):  # bounded: until the provider holds all four
                if len(provider.config.seen) == 4:
                    break
                await asyncio.sleep(0.005)
            stopped = time.monotonic()
            stop = asyncio.ensure_future(service.stop())
            rest, rpc = await asyncio.wait_for(
                asyncio.gather(until_cut_off(lines), until_unavailable(chunks)), timeout=20
            )
            await asyncio.wait_for(stop, timeout=20)
            answer = await unary_rest
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await unary_rpc
    finally:
        if not service.http_task.done():
            await service.stop()
    assert rest - stopped >= GRACE and rpc - stopped >= GRACE
    assert abs(rest - rpc) < 0.5, (rest - stopped, rpc - stopped)
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "server_shutting_down"
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    shut = [("server_shutting_down", 503)] * 4
    assert [(r.status, r.http_status) for r in usage.records] == shut
    assert all(r.estimated and r.completion_tokens for r in usage.records)  # billed as sent
