"""Headers reach the server as gRPC metadata, over the channel and in-process alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from gateway.in_process import InProcessInvoker, captured
from server.errors import RateLimited
from server.rpc.status import abort
from server.runtime import app
from server.runtime.config import Config
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc

HEADERS = {
    "Authorization": "Bearer sk-test",
    "organization_id": "org-42",
    "x-session-id": "session-7",
    "x-request-id": "req_abc",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
}


LIMIT_HEADERS = (("x-ratelimit-remaining-requests", "9"), ("x-internal-note", "hidden"))


class Recorder(chat_pb2_grpc.ChatServiceServicer):
    """A ChatService that remembers each call's metadata and answers with response metadata.

    The user message `fail` makes it refuse the call as rate-limited.
    """

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    async def CreateChatCompletion(
        self, request: chat_pb2.CreateChatCompletionRequest, context: Any
    ) -> chat_pb2.CreateChatCompletionResponse:
        self.metadata.append(dict(context.invocation_metadata()))
        if request.messages and request.messages[0].content_text == "fail":
            error = RateLimited("slow down", retry_after=7)
            await abort(context, error, {"x-ratelimit-remaining-requests": "0"})
        context.set_trailing_metadata(LIMIT_HEADERS)
        return chat_pb2.CreateChatCompletionResponse(id="x", object="chat.completion")

    async def StreamChatCompletion(
        self, request: chat_pb2.StreamChatCompletionRequest, context: Any
    ) -> AsyncIterator[chat_pb2.StreamChatCompletionResponse]:
        await context.send_initial_metadata(LIMIT_HEADERS)
        chunk = chat_pb2.ChatCompletionChunk(id="x", object="chat.completion.chunk")
        yield chat_pb2.StreamChatCompletionResponse(chunk=chunk)


@pytest.fixture(params=["in-process", "channel"])
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, Recorder]]:
    recorder = Recorder()
    config = Config(host="127.0.0.1", http_port=0, grace=1.0)
    if request.param == "in-process":
        invoker = InProcessInvoker(
            captured([(chat_pb2_grpc.add_ChatServiceServicer_to_server, recorder)])
        )
        http, task, port = await app.serve_http(config, invoker)
        yield port, recorder
        http.should_exit = True
        await task
        return
    server = grpc.aio.server()
    chat_pb2_grpc.add_ChatServiceServicer_to_server(recorder, server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    service = await app.start_gateway(
        Config(host="127.0.0.1", http_port=0, grpc_target=f"127.0.0.1:{grpc_port}")
    )
    yield service.http_port, recorder
    await service.stop()
    await server.stop(None)


async def test_headers_become_metadata(gateway: tuple[int, Recorder]) -> None:
    port, recorder = gateway
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=HEADERS
        )
    assert response.status_code == 200
    seen = recorder.metadata[0]
    for name, value in HEADERS.items():
        assert seen[name.lower()] == value
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert response.headers["x-request-id"] == "req_abc"


async def test_unserved_rpc_is_501(gateway: tuple[int, Recorder]) -> None:
    port, _ = gateway
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/v1/models")
    assert response.status_code == 501
    assert response.json()["error"]["type"] == "api_error"


@pytest.mark.parametrize("stream", [False, True])
async def test_response_metadata_becomes_headers(
    gateway: tuple[int, Recorder], stream: bool
) -> None:
    port, _ = gateway
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": stream}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-remaining-requests"] == "9"
    assert "x-internal-note" not in response.headers  # only the documented prefixes cross


async def test_error_metadata_becomes_headers(gateway: tuple[int, Recorder]) -> None:
    port, _ = gateway
    body = {"messages": [{"role": "user", "content": "fail"}]}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


async def post_chat(port: int, headers: dict[str, Any]) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=headers
        )


async def test_a_header_grpc_cannot_carry_is_400_naming_it(gateway: tuple[int, Recorder]) -> None:
    port, recorder = gateway
    response = await post_chat(port, {"x-session-id": "café".encode("latin-1")})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "x-session-id" in error["message"]
    assert error["code"] == "invalid_header"
    assert recorder.metadata == []  # refused before the call


@pytest.mark.parametrize("size", [8 * 1024, 16 * 1024, 60 * 1024])
async def test_headers_over_grpcs_metadata_limit_are_431_not_429(
    gateway: tuple[int, Recorder], size: int
) -> None:
    port, recorder = gateway
    response = await post_chat(port, {"x-session-id": "s" * size})
    assert response.status_code == 431
    error = response.json()["error"]
    assert "x-session-id" in error["message"]
    assert error["code"] == "request_header_fields_too_large"
    assert recorder.metadata == []


async def test_headers_within_the_limit_pass(gateway: tuple[int, Recorder]) -> None:
    port, recorder = gateway
    response = await post_chat(port, {"x-session-id": "s" * 6 * 1024})
    assert response.status_code == 200
    assert recorder.metadata[0]["x-session-id"] == "s" * 6 * 1024


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("req_client-1", True),
        ("r" * 128, True),
        ("r" * 129, False),
        ("r" * 40_000, False),
        ("has space", False),
        ("", False),
    ],
    ids=["id", "128 characters", "129 characters", "40,000 characters", "space", "empty"],
)
async def test_a_clients_request_id_is_kept_only_if_short_and_printable(
    gateway: tuple[int, Recorder], sent: str, kept: bool
) -> None:
    port, recorder = gateway
    response = await post_chat(port, {"x-request-id": sent})
    assert response.status_code == 200
    answered = response.headers["x-request-id"]
    assert (answered == sent) is kept
    if not kept:
        assert answered.startswith("req_") and len(answered) == 36
    assert recorder.metadata[0]["x-request-id"] == answered
