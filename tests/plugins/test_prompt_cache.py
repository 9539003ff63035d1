"""Prompt-cache pass-through: `cache_control` on content parts reaches an Anthropic-shaped
server unchanged; its cache reads and writes come back in `usage.prompt_tokens_details`
and are priced at the endpoint's cached prices. `debug.echo_upstream_body` shows the
exact body the upstream got, credentials redacted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from server.providers.http.anthropic import AnthropicProvider
from server.providers.http.config import UpstreamConfig
from server.providers.http.echo import REDACTED, redacted_json
from server.routing.catalog import Endpoint
from server.runtime import app
from tests.conftest import StartService, sdk
from tests.plugins.upstreams import (
    CACHE_READ,
    CACHE_WRITE,
    INPUT,
    OUTPUT,
    Upstream,
    anthropic_messages,
    serving,
)
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2

SECRET = "sk-ant-test-0123456789"
EPHEMERAL = {"type": "ephemeral"}
MESSAGES: list[Any] = [
    {
        "role": "system",
        "content": [
            {"type": "text", "text": "You answer from the handbook."},
            {"type": "text", "text": "HANDBOOK " * 500, "cache_control": EPHEMERAL},
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is rule 7?", "cache_control": {**EPHEMERAL, "ttl": "1h"}}
        ],
    },
]


@pytest.fixture
async def anthropic() -> AsyncIterator[Upstream]:
    async with serving({"/v1/messages": anthropic_messages}) as upstream:
        yield upstream


async def claude(start_service: StartService, upstream: Upstream) -> app.Service:
    config = UpstreamConfig(name="anthropic", base_url=upstream.url, api_key=SECRET)
    provider = AnthropicProvider(config)
    endpoint = Endpoint(
        "claude",
        provider,
        "claude-test",
        prompt_price=3.0,  # USD per million tokens
        completion_price=15.0,
        cached_price=0.3,
        cache_write_price=3.75,
    )
    return await start_service([provider], [endpoint])


async def test_cache_control_reaches_anthropic_and_cached_tokens_come_back(
    start_service: StartService, anthropic: Upstream
) -> None:
    service = await claude(start_service, anthropic)
    async with sdk(service) as client:
        completion = await client.chat.completions.create(model="claude", messages=MESSAGES)
    sent = anthropic.bodies[-1]
    assert sent["system"] == [
        {"type": "text", "text": "You answer from the handbook."},
        {"type": "text", "text": "HANDBOOK " * 500, "cache_control": EPHEMERAL},
    ]
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "What is rule 7?", "cache_control": {**EPHEMERAL, "ttl": "1h"}}
    ]
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens == INPUT + CACHE_READ + CACHE_WRITE
    assert usage.prompt_tokens_details.cached_tokens == CACHE_READ
    assert usage.prompt_tokens_details.cache_write_tokens == CACHE_WRITE
    expected = (INPUT * 3.0 + CACHE_READ * 0.3 + CACHE_WRITE * 3.75 + OUTPUT * 15.0) / 1e6
    assert usage.model_extra is not None
    assert usage.model_extra["cost"] == pytest.approx(expected)


async def test_without_cache_control_the_system_prompt_stays_one_string(
    start_service: StartService, anthropic: Upstream
) -> None:
    service = await claude(start_service, anthropic)
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    async with sdk(service) as client:
        completion = await client.chat.completions.create(model="claude", messages=messages)
    assert anthropic.bodies[-1]["system"] == "Be brief."
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0


async def test_grpc_cache_control_and_echoed_body(
    start_service: StartService, anthropic: Upstream
) -> None:
    service = await claude(start_service, anthropic)
    part = message_pb2.ContentPart(
        type=message_pb2.CONTENT_PART_TYPE_TEXT,
        text="What is rule 7?",
        cache_control=message_pb2.CacheControl(type="ephemeral"),
    )
    request = chat_pb2.CreateChatCompletionRequest(
        model="claude",
        messages=[
            message_pb2.ChatMessage(
                role=message_pb2.ROLE_USER, content_parts=message_pb2.ContentParts(parts=[part])
            )
        ],
        debug=chat_pb2.Debug(echo_upstream_body=True),
        stream_options=message_pb2.StreamOptions(include_usage=True),
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        call = stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(request=request))
        chunks = [r.chunk async for r in call]
    assert json.loads(chunks[0].debug.echo_upstream_body) == anthropic.bodies[-1]
    assert not chunks[0].choices
    assert not any(c.HasField("debug") for c in chunks[1:])
    assert chunks[-1].usage.prompt_tokens_details.cache_write_tokens == CACHE_WRITE


async def test_rest_stream_echoes_the_exact_upstream_body_first(
    start_service: StartService, anthropic: Upstream
) -> None:
    service = await claude(start_service, anthropic)
    async with sdk(service) as client:
        stream = await client.chat.completions.create(
            model="claude",
            messages=MESSAGES,
            stream=True,
            extra_body={"debug": {"echo_upstream_body": True}},
        )
        chunks = [chunk async for chunk in stream]
        whole = await client.chat.completions.create(
            model="claude", messages=MESSAGES, extra_body={"debug": {"echo_upstream_body": True}}
        )
    first = chunks[0].model_extra
    assert first is not None and chunks[0].choices == []
    assert first["debug"]["echo_upstream_body"] == json.loads(anthropic.raw[0])
    assert SECRET not in json.dumps(first) and anthropic.headers[0]["x-api-key"] == SECRET
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ok"
    assert "debug" not in (whole.model_extra or {})  # streaming only, as on OpenRouter


def test_credentials_are_redacted_however_deep() -> None:
    config = UpstreamConfig(name="x", base_url="http://x", api_key=SECRET)
    body = {
        "model": "m",
        "max_tokens": 5,
        "api_key": "anything",
        "extra": {"Authorization": "Bearer t", "note": f"key={SECRET}", "list": [SECRET]},
    }
    assert json.loads(redacted_json(body, config)) == {
        "model": "m",
        "max_tokens": 5,
        "api_key": REDACTED,
        "extra": {"Authorization": REDACTED, "note": f"key={REDACTED}", "list": [REDACTED]},
    }
