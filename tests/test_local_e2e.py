"""The real local models (llama.cpp: SmolLM2-135M-Instruct, Gemma 3 270M) end to end:
SDK, SSE and gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import openai
import pytest

from server.providers.llama.models import GEMMA3, SMOLLM2, LocalModel
from server.runtime import app
from server.runtime.config import Config
from tests.conftest import sdk, user_turn
from tests.openai_schema import validate
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2, parameters_pb2

pytestmark = pytest.mark.local_model

PROMPT = "Write one sentence about the ocean."
MODEL = "gemma-3-270m"
DEFAULT = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
async def local_service() -> AsyncIterator[app.Service]:
    config = Config(
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        grace=2.0,
        n_ctx=2048,
        max_resident_models=2,  # both bundled models: no reloading between tests
        database_url="sqlite://:memory:",
    )
    service = await app.start(config)
    yield service
    await service.stop()


@pytest.fixture
async def client(local_service: app.Service) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk(local_service) as c:
        yield c


async def test_the_default_model_answers_like_a_chat_model(local_service: app.Service) -> None:
    body = {
        "messages": user_turn("Write a haiku about the sea."),
        "max_tokens": 48,
        "temperature": 0,
    }
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{local_service.http_port}") as http:
        models = (await http.get("/v1/models")).json()
        answer = (await http.post("/v1/chat/completions", json=body, timeout=120)).json()
    validate("CreateChatCompletionResponse", answer)
    listed = [(m["id"], m["owned_by"]) for m in models["data"]]
    assert listed == [(DEFAULT, "local"), (MODEL, "local")]
    assert answer["model"] == DEFAULT
    poem = answer["choices"][0]["message"]["content"]
    # Gemma 270M (a base model) repeated the question and then noise; SmolLM2 writes lines.
    assert not poem.startswith("Write a haiku") and poem.count("\n") >= 2
    assert "sea" in poem.lower() or "wave" in poem.lower()


async def test_configured_models_are_served_by_id_and_alias(tmp_path: Path) -> None:
    models = (
        LocalModel("tiny", bundled=SMOLLM2, n_ctx=512, aliases=("t",)),
        LocalModel("base", bundled=GEMMA3, n_ctx=512),
    )
    config = Config(
        host="127.0.0.1", http_port=0, grpc_port=0, grace=2.0, data_dir=str(tmp_path),
        local_models=models, database_url="sqlite://:memory:",
    )  # fmt: skip
    service = await app.start(config)
    try:
        async with sdk(service) as client:
            listed = [(m.id, m.owned_by) async for m in client.models.list()]
            by_alias = await client.chat.completions.create(
                model="t", messages=user_turn("Hi"), max_tokens=2
            )
    finally:
        await service.stop()
    assert listed == [("tiny", "local"), ("base", "local")]
    assert by_alias.model == "tiny" and by_alias.usage is not None


async def test_completion_has_real_text_and_usage(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=user_turn(PROMPT),
        max_tokens=8,
        seed=1,
    )
    validate("CreateChatCompletionResponse", raw.http_response.json())
    completion = raw.parse()
    choice = completion.choices[0]
    assert choice.message.content
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 8
    assert completion.usage.prompt_tokens > len(PROMPT.split())  # the chat template adds tokens
    assert choice.finish_reason == ("length" if completion.usage.completion_tokens == 8 else "stop")
    assert completion.model == MODEL and completion.provider == "local"  # type: ignore[attr-defined]


async def test_stream_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=user_turn(PROMPT),
        max_tokens=6,
        seed=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    deltas = [c for c in chunks if c.choices]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == sum(1 for c in deltas if c.choices[0].delta.content)
    assert deltas[-1].choices[0].finish_reason in ("stop", "length")


async def test_same_seed_same_text_over_rest_and_grpc(
    client: openai.AsyncOpenAI, local_service: app.Service
) -> None:
    rest = await client.chat.completions.create(
        model=MODEL,
        messages=user_turn(PROMPT),
        max_tokens=12,
        seed=42,
        temperature=0.9,
    )
    request = chat_pb2.CreateChatCompletionRequest(
        model=MODEL,
        parameters=parameters_pb2.GenerationParameters(max_tokens=12, seed=42, temperature=0.9),
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text=PROMPT)],
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{local_service.grpc_port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        unary = await stub.CreateChatCompletion(request)
        streamed = "".join(
            [
                r.chunk.choices[0].delta.content
                async for r in stub.StreamChatCompletion(
                    chat_pb2.StreamChatCompletionRequest(request=request)
                )
                if r.chunk.choices
            ]
        )
    assert rest.choices[0].message.content == unary.choices[0].message.content == streamed


async def test_unsupported_parameters_are_dropped_and_named(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model=MODEL,
        messages=user_turn(PROMPT),
        max_tokens=2,
        reasoning_effort="low",
    )
    assert completion.dropped_parameters == ["reasoning_effort"]  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model=MODEL,
            messages=user_turn(PROMPT),
            max_tokens=2,
            reasoning_effort="low",
            extra_body={"provider": {"require_parameters": True}},
        )
    assert caught.value.param == "reasoning_effort"


async def test_n_gives_several_choices_whole_and_streamed(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model=DEFAULT, messages=user_turn(PROMPT), max_tokens=6, seed=3, n=2
    )
    body = raw.http_response.json()
    validate("CreateChatCompletionResponse", body)
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert "dropped_parameters" not in body or not body["dropped_parameters"]
    stream = await client.chat.completions.create(
        model=DEFAULT, messages=user_turn(PROMPT), max_tokens=6, seed=3, n=2, stream=True
    )
    texts = ["", ""]
    async for chunk in stream:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == [c["message"]["content"] for c in body["choices"]]


async def test_disconnect_frees_the_model(
    local_service: app.Service, client: openai.AsyncOpenAI
) -> None:
    body = {
        "model": MODEL,
        "messages": user_turn("Tell a very long story."),
        "max_tokens": 2000,
        "stream": True,
    }
    base = f"http://127.0.0.1:{local_service.http_port}"
    async with (
        httpx.AsyncClient(base_url=base) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert (await anext(response.aiter_lines())).startswith("data: {")
    # 2,000 tokens take ~40 s at ~50 tokens/s: a prompt answer shows the first one stopped.
    follow_up = client.chat.completions.create(
        model=MODEL, messages=user_turn(PROMPT), max_tokens=4
    )
    completion = await asyncio.wait_for(follow_up, timeout=15)
    assert completion.usage is not None and completion.usage.completion_tokens > 0


async def test_concurrent_requests_queue(client: openai.AsyncOpenAI) -> None:
    calls = [
        client.chat.completions.create(
            model=MODEL, messages=user_turn(PROMPT), max_tokens=4, seed=i
        )
        for i in range(3)
    ]
    results = await asyncio.gather(*calls)
    assert all(r.usage is not None and r.usage.completion_tokens > 0 for r in results)


async def test_template_and_memory_reach_the_local_model(local_service: app.Service) -> None:
    base = f"http://127.0.0.1:{local_service.http_port}"
    org = {"organization_id": "acme"}
    template = {
        "name": "greeter",
        "messages": [{"role": "system", "content": "Greet {{name}} in one short line."}],
        "variables": [{"name": "name"}],
        "model": MODEL,
    }
    async with httpx.AsyncClient(base_url=base, headers=org) as http:
        assert (await http.post("/v1/templates", json=template)).status_code == 200
        memory = await http.post("/v1/memories", json={"content": "Deploys happen on Thursday."})
    memory_id = memory.json()["id"]
    question = user_turn("Which day do deploys happen?")
    async with openai.AsyncOpenAI(
        base_url=f"{base}/v1", api_key="x", max_retries=0, default_headers=org
    ) as client:
        plain = await client.chat.completions.create(
            model=MODEL,
            messages=question,
            max_tokens=4,
            metadata={"memory": "off"},
        )
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=question,
            max_tokens=4,
            extra_body={"template": "greeter", "variables": {"name": "Ada"}},
        )
    assert raw.headers["x-tokenwire-memory-ids"] == memory_id
    augmented = raw.parse()
    assert plain.usage is not None and augmented.usage is not None
    # The template's system message and the recalled memory are in the prompt the model read.
    assert augmented.usage.prompt_tokens > plain.usage.prompt_tokens + 10
