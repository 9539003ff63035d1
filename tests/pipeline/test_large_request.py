"""A large chat request is converted (and trimmed by middle-out) off the event loop.

Converting 120k messages takes the server ~0.5 s. The conversion of the big request here is
held in its thread until a small request has been answered: on the event loop (before), the
small one could only be served after the big one had reached the provider.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import orjson
import pytest

from server.pipeline import convert, transforms
from server.providers.fake import FakeProvider
from server.runtime import app
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2, parameters_pb2

# Over the server's bound on messages; long enough that middle-out drops half of them.
MESSAGES = convert.OFFLOAD_MESSAGES + 64
TEXT = "a" * 200
HOLD_SECONDS = 10  # how long a held conversion waits for the small request at most


def chat(count: int) -> dict[str, Any]:
    messages = [{"role": "user", "content": TEXT}] * count
    return {"model": "fake-echo", "messages": messages, "transforms": ["middle-out"]}


async def over_rest(service: app.Service, body: dict[str, Any]) -> int:
    url = f"http://127.0.0.1:{service.http_port}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=60) as http:
        return (await http.post(url, content=orjson.dumps(body))).status_code


async def over_grpc(service: app.Service, body: dict[str, Any]) -> int:
    request = chat_pb2.CreateChatCompletionRequest(
        model=body["model"],
        parameters=parameters_pb2.GenerationParameters(transforms=body["transforms"]),
        messages=[
            message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text=m["content"])
            for m in body["messages"]
        ],
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(request)
    return 200


def held(work: Callable[..., Any], started: threading.Event, release: threading.Event) -> Any:
    """`work`, held at its start when called for the big request until `release` is set."""

    def hold(*args: Any) -> Any:
        messages = getattr(args[0], "messages", args[0])  # a request's, or middle-out's
        if len(messages) > 1:
            started.set()
            release.wait(HOLD_SECONDS)
        return work(*args)

    return hold


@pytest.mark.parametrize("send", [over_rest, over_grpc], ids=["rest", "grpc"])
@pytest.mark.parametrize(
    ("module", "name"),
    [(convert, "generation_request"), (transforms, "middle_out")],
    ids=["converting", "middle-out"],
)
async def test_a_large_request_leaves_other_clients_served(
    service: app.Service,
    fake: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
    send: Callable[[app.Service, dict[str, Any]], Any],
    module: object,
    name: str,
) -> None:
    started, release = threading.Event(), threading.Event()
    monkeypatch.setattr(module, name, held(getattr(module, name), started, release))
    big = asyncio.ensure_future(send(service, chat(MESSAGES)))
    try:
        assert await asyncio.to_thread(started.wait, 60), "the big request was never converted"
        assert await asyncio.wait_for(send(service, chat(1)), timeout=30) == 200
        assert all(len(g.messages) == 1 for g in fake.config.seen)  # the big one is still held
    finally:
        release.set()
    assert await asyncio.wait_for(big, timeout=60) == 200
    assert any(len(g.messages) > 1 for g in fake.config.seen)
