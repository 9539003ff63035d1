"""The gateway driven by the official `openai` SDK, in-process and as a standalone gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from server.errors import (
    BadUpstream,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    ProviderError,
    RateLimited,
    TokenwireError,
    Unauthenticated,
    Unprocessable,
    UpstreamTimeout,
)
from server.providers.fake import FakeConfig, FakeProvider
from server.runtime import app
from server.runtime.config import Config
from tests.conftest import StartService, sdk, user_turn
from tests.openai_schema import validate

USER = user_turn("the quick brown fox")


@pytest.fixture(params=["in-process", "standalone"])
async def any_client(
    request: pytest.FixtureRequest, service: app.Service
) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK against the gateway sharing the server's process, or one on its own."""
    if request.param == "in-process":
        async with sdk(service) as client:
            yield client
        return
    config = Config(host="127.0.0.1", http_port=0, grpc_target=f"127.0.0.1:{service.grpc_port}")
    gateway = await app.start_gateway(config)
    try:
        async with sdk(gateway) as client:
            yield client
    finally:
        await gateway.stop()


async def test_completion(any_client: openai.AsyncOpenAI) -> None:
    raw = await any_client.chat.completions.with_raw_response.create(
        model="fake-echo",
        messages=USER,
    )
    validate("CreateChatCompletionResponse", raw.http_response.json())
    assert raw.headers["x-request-id"].startswith("req_")
    completion = raw.parse()
    assert completion.choices[0].message.content == "the quick brown fox "
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    assert completion.model == "fake-echo"


async def test_stream_with_usage(any_client: openai.AsyncOpenAI) -> None:
    stream = await any_client.chat.completions.create(
        model="fake-echo",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "the quick brown fox "
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 8


async def test_stream_without_usage_has_no_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="fake-echo",
        messages=USER,
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.choices and c.usage is None for c in chunks)


async def test_sse_wire_format(service: app.Service) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as http:
        body = {"model": "fake-echo", "messages": USER, "stream": True}
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            raw = (await response.aread()).decode()
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: {") for e in events[:-2])


async def test_models(client: openai.AsyncOpenAI, service: app.Service) -> None:
    models = [m async for m in client.models.list()]
    assert [m.id for m in models] == ["fake-echo"]
    async with httpx.AsyncClient() as http:
        listed = (await http.get(f"http://127.0.0.1:{service.http_port}/v1/models")).json()
    validate("ListModelsResponse", listed)
    model = await client.models.retrieve("fake/fake-echo")
    assert model.owned_by == "tokenwire"


@pytest.mark.parametrize(
    ("error", "sdk_error", "status"),
    [
        (Unauthenticated("bad key"), openai.AuthenticationError, 401),
        (PaymentRequired("budget spent"), openai.APIStatusError, 402),
        (PermissionDenied("not yours"), openai.PermissionDeniedError, 403),
        (NotFound("gone"), openai.NotFoundError, 404),
        (Unprocessable("missing variable"), openai.UnprocessableEntityError, 422),
        (RateLimited("slow down", retry_after=2), openai.RateLimitError, 429),
        (TokenwireError("boom"), openai.InternalServerError, 500),
        (BadUpstream("garbage"), openai.InternalServerError, 502),
        (ProviderError("down"), openai.InternalServerError, 503),
        (UpstreamTimeout("slow"), openai.InternalServerError, 504),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_error_classes(
    start_service: StartService,
    error: TokenwireError,
    sdk_error: type[openai.APIStatusError],
    status: int,
    stream: bool,
) -> None:
    service = await start_service([FakeProvider(FakeConfig(error=error))])
    async with sdk(service) as client:
        with pytest.raises(sdk_error) as caught:
            await client.chat.completions.create(
                model="fake-echo",
                messages=USER,
                stream=stream,
            )
    assert caught.value.status_code == status
    body = caught.value.response.json()
    validate("ErrorResponse", body)
    assert body["error"]["message"] == error.message
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "2"


async def test_bad_request_names_param(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="fake-echo",
            messages=USER,
            temperature=9,
        )
    assert caught.value.param == "temperature"


async def test_unknown_model_is_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="nope", messages=USER)
    assert caught.value.code == "model_not_found"


async def test_error_after_first_chunk_is_one_sse_event(start_service: StartService) -> None:
    fake = FakeProvider(FakeConfig(error=ProviderError("upstream died"), error_after=2))
    service = await start_service([fake])
    async with sdk(service) as client:
        stream = await client.chat.completions.create(
            model="fake-echo",
            messages=USER,
            stream=True,
        )
        received: list[str] = []
        with pytest.raises(openai.APIError, match="upstream died"):
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")
    assert received == ["the ", "quick "]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/chat/completions", b"{not json", 400),
        ("POST", "/v1/chat/completions", b"", 400),
        ("POST", "/v1/chat/completions", b'{"messages": "hi"}', 400),
        ("POST", "/v1/chat/completions", b'{"messages": [], "model": "fake-echo"}', 400),
        ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user"}]}', 400),
        (
            "POST",
            "/v1/chat/completions",
            b'{"messages": [{"role": "user", "content": "x"}], "bogus": 1}',
            400,
        ),
        ("GET", "/v1/nothing-here", b"", 404),
        ("GET", "/v1/chat/completions", b"", 405),
        ("DELETE", "/v1/models", b"", 405),
    ],
)
async def test_http_errors(
    service: app.Service, method: str, path: str, body: bytes, status: int
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as http:
        response = await http.request(method, path, content=body)
    assert response.status_code == status
    validate("ErrorResponse", response.json())
    assert response.headers["x-request-id"]
    if status == 405:
        assert response.headers["allow"]


async def test_oversized_body_is_413(start_service: StartService, fake: FakeProvider) -> None:
    service = await start_service([fake], max_body_bytes=1024)
    big = {"model": "fake-echo", "messages": [{"role": "user", "content": "x" * 2000}]}
    async with sdk(service) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(**big)  # type: ignore[call-overload]
    assert caught.value.status_code == 413


async def test_request_id_is_echoed(service: app.Service) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "fake-echo", "messages": USER},
            headers={"x-request-id": "req_mine"},
        )
    assert response.headers["x-request-id"] == "req_mine"
    assert response.json()["id"] == "chatcmpl-mine"


async def test_disconnect_stops_the_provider(start_service: StartService) -> None:
    gate = asyncio.Event()  # never set: the provider would wait forever after the first delta
    fake = FakeProvider(FakeConfig(gate=gate))
    service = await start_service([fake])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as http:
        body = {"model": "fake-echo", "messages": USER, "stream": True}
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            first = await anext(response.aiter_lines())
            assert first.startswith("data: {")
    await asyncio.wait_for(fake.config.closed.wait(), timeout=5)
    assert not gate.is_set()


async def test_keepalive_while_first_token_is_slow(start_service: StartService) -> None:
    gate = asyncio.Event()
    fake = FakeProvider(FakeConfig(gate=gate, gate_at=0))
    service = await start_service([fake], keepalive_interval=0.05)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as http:
        body = {"model": "fake-echo", "messages": USER, "stream": True}
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            assert await asyncio.wait_for(anext(lines), timeout=5) == ": keepalive"
            gate.set()
            rest = [line async for line in lines if line.startswith("data:")]
    assert rest[-1] == "data: [DONE]"
    assert len(rest) == 6  # four words, the finish, [DONE]


ADMIN = "admin-token-0123456789"


@pytest.mark.parametrize("gateway", ["in-process", "standalone"])
async def test_rate_limit_headers_arrive_while_the_first_token_is_slow(
    start_service: StartService, gateway: str
) -> None:
    """The status line goes out with the first keepalive, before the first token, and still
    carries the response metadata the stages set: the server sends it once they have run."""
    gate = asyncio.Event()
    fake = FakeProvider(FakeConfig(gate=gate, gate_at=0))
    service = await start_service([fake], keepalive_interval=0.05, admin_token=ADMIN)
    served = service
    if gateway == "standalone":
        target = f"127.0.0.1:{service.grpc_port}"
        served = await app.start_gateway(
            Config(host="127.0.0.1", http_port=0, grpc_target=target, keepalive_interval=0.05)
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.http_port}") as http:
            secret = await limited_key(http)
            body = {"model": "fake-echo", "messages": USER, "stream": True}
            headers = {"authorization": f"Bearer {secret}"}
            async with http.stream(
                "POST", "/v1/chat/completions", json=body, headers=headers
            ) as response:
                lines = response.aiter_lines()
                for _ in range(3):  # the first token is still held back
                    assert await asyncio.wait_for(anext(lines), timeout=5) == ": keepalive"
                    assert await asyncio.wait_for(anext(lines), timeout=5) == ""
                gate.set()
                rest = [line async for line in lines if line.startswith("data:")]
    finally:
        if served is not service:
            await served.stop()
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit-requests"] == "5"
    assert response.headers["x-ratelimit-remaining-requests"] == "4"
    assert rest[-1] == "data: [DONE]"


async def limited_key(http: httpx.AsyncClient) -> str:
    """A new key limited to 5 requests an hour, so its calls get x-ratelimit-* headers."""
    body = {
        "organization_id": "acme",
        "create_organization": True,
        "rate_limit": {"requests": 5, "window_seconds": 3600},
    }
    created = await http.post(
        "/v1/admin/keys", json=body, headers={"authorization": f"Bearer {ADMIN}"}
    )
    assert created.status_code == 200, created.text
    secret: str = created.json()["secret"]
    return secret


async def test_openapi_document_is_served(service: app.Service) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as http:
        doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert {"/v1/models", "/v1/templates", "/v1/memories", "/v1/admin/keys", "/v1/usage"} <= set(
        doc["paths"]
    )


async def test_oxen_path_serves_the_same_call(service: app.Service) -> None:
    """`POST /api/ai/chat/completions` (Oxen's path) is the same RPC, streamed or not."""
    base = f"http://127.0.0.1:{service.http_port}/api/ai"
    async with openai.AsyncOpenAI(base_url=base, api_key="unused", max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="fake-echo", messages=USER
        )
        validate("CreateChatCompletionResponse", raw.http_response.json())
        assert raw.parse().choices[0].message.content == "the quick brown fox "
        stream = await client.chat.completions.create(model="fake-echo", messages=USER, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "the quick brown fox "
