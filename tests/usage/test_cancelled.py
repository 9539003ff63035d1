"""A stream the client cancels is billed for what it was sent, estimated and marked so, over
gRPC and through the official SDK, instead of 0 tokens and $0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import openai
import pytest

from server.pipeline.context import UsageRecord
from server.providers.fake import FakeConfig, FakeProvider
from server.routing.catalog import Endpoint
from server.runtime import app
from server.runtime.config import Config
from server.storage.database import Database
from server.usage.query import UsageFilter
from server.usage.store import UsageStore
from tests.conftest import user_turn
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2

PROMPT = "one two three four five six seven eight"
PRICE = 10_000.0  # USD per million tokens: 0.01 per token


@dataclass
class Stack:
    service: app.Service
    fake: FakeProvider
    usage: UsageStore


@pytest.fixture
async def stack(database: Database) -> AsyncIterator[Stack]:
    # The fake echoes PROMPT a word per delta and holds back everything after the third.
    fake = FakeProvider(FakeConfig(gate=asyncio.Event(), gate_at=3))
    endpoint = Endpoint("fake-echo", fake, "fake-echo", prompt_price=PRICE, completion_price=PRICE)
    config = Config(host="127.0.0.1", http_port=0, grpc_port=0, grace=1.0, retries=0)
    service = await app.start(config, [fake], [endpoint], db=database)
    yield Stack(service, fake, UsageStore(database))
    await service.stop()


async def the_record(stack: Stack) -> UsageRecord:
    """The one usage record, once the server has finished with the cancelled request."""
    for _ in range(500):  # bounded: the server notices the cancellation asynchronously
        assert stack.service.settle is not None
        await stack.service.settle()
        found = await stack.usage.records(UsageFilter(), 10)
        if found:
            (record,) = found
            return record
        await asyncio.sleep(0.01)
    raise AssertionError("no usage record for the cancelled request")


def assert_billed_for_three_words(record: UsageRecord) -> None:
    assert record.cancelled and record.http_status == 499 and record.estimated
    assert record.completion_tokens == 4  # "one two three " is 14 characters
    assert record.prompt_tokens >= len(PROMPT) // 4
    assert record.cost_usd == pytest.approx(0.01 * (record.prompt_tokens + 4))
    (attempt,) = record.attempts
    assert (attempt.outcome, attempt.completion_tokens) == ("cancelled", 4)


async def test_a_cancelled_grpc_stream_is_billed_for_what_it_received(stack: Stack) -> None:
    message = message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text=PROMPT)
    request = chat_pb2.CreateChatCompletionRequest(model="fake-echo", messages=[message])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.service.grpc_port}") as channel:
        call = chat_pb2_grpc.ChatServiceStub(channel).StreamChatCompletion(
            chat_pb2.StreamChatCompletionRequest(request=request)
        )
        chunks = aiter(call)
        words = [(await anext(chunks)).chunk.choices[0].delta.content for _ in range(3)]
        call.cancel()
    assert "".join(words) == "one two three "
    assert_billed_for_three_words(await the_record(stack))


async def test_a_stream_the_sdk_leaves_is_billed_for_what_it_received(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.service.http_port}/v1"
    async with openai.AsyncOpenAI(base_url=base, api_key="k", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="fake-echo", messages=user_turn(PROMPT), stream=True
        )
        words = []
        async for chunk in stream:
            words.append(chunk.choices[0].delta.content or "")
            if len(words) == 3:
                break
        await stream.close()  # the client hangs up just before the end
    assert "".join(words) == "one two three "
    assert_billed_for_three_words(await the_record(stack))
