"""Text the database cannot store (NUL) is a 400 naming the problem, on both databases and
both transports, never a 500; the request that carried it leaves no harm behind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import httpx
import openai
import pytest

from server.providers.fake import FakeProvider
from server.runtime import app
from server.runtime.config import Config
from server.storage.database import Database
from tests.conftest import user_turn
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2
from tokenwire.memory.v1 import memory_pb2, memory_pb2_grpc
from tokenwire.templates.v1 import templates_pb2, templates_pb2_grpc
from tokenwire.usage.v1 import usage_pb2, usage_pb2_grpc

ADMIN = "admin-token-0123456789"
ACME = (("organization_id", "acme"),)
EVIL = "ev\x00il"


@pytest.fixture
async def service(database: Database) -> AsyncIterator[app.Service]:
    config = Config(
        host="127.0.0.1", http_port=0, grpc_port=0, grace=1.0, retries=0, admin_token=ADMIN
    )
    service = await app.start(config, [FakeProvider()], db=database)
    yield service
    await service.stop()


def chat(**fields: Any) -> chat_pb2.CreateChatCompletionRequest:
    message = message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="hi")
    return chat_pb2.CreateChatCompletionRequest(model="fake-echo", messages=[message], **fields)


Call = Callable[[grpc.aio.Channel], Awaitable[object]]

GRPC_CASES: dict[str, Call] = {
    "memory": lambda ch: memory_pb2_grpc.MemoryServiceStub(ch).AddMemory(
        memory_pb2.AddMemoryRequest(memory=memory_pb2.Memory(content=EVIL)), metadata=ACME
    ),
    "memory list": lambda ch: memory_pb2_grpc.MemoryServiceStub(ch).ListMemories(
        memory_pb2.ListMemoriesRequest(user=EVIL), metadata=ACME
    ),
    "template": lambda ch: templates_pb2_grpc.TemplateServiceStub(ch).GetTemplate(
        templates_pb2.GetTemplateRequest(template=EVIL), metadata=ACME
    ),
    "chat template": lambda ch: chat_pb2_grpc.ChatServiceStub(ch).CreateChatCompletion(
        chat(template=EVIL), metadata=ACME
    ),
    "usage filter": lambda ch: usage_pb2_grpc.UsageServiceStub(ch).GetUsage(
        usage_pb2.GetUsageRequest(filter=usage_pb2.UsageFilter(session_id=EVIL)),
        metadata=(("authorization", f"Bearer {ADMIN}"),),
    ),
    "chat user": lambda ch: chat_pb2_grpc.ChatServiceStub(ch).CreateChatCompletion(chat(user=EVIL)),
    "chat session_id": lambda ch: chat_pb2_grpc.ChatServiceStub(ch).CreateChatCompletion(
        chat(session_id=EVIL)
    ),
}


@pytest.mark.parametrize("case", GRPC_CASES)
async def test_nul_over_grpc_is_invalid_argument(service: app.Service, case: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await GRPC_CASES[case](channel)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "NUL" in (raised.value.details() or "")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/memories", {"content": EVIL}),
        ("GET", "/v1/memories?user=ev%00il", None),
        ("GET", "/v1/templates/ev%00il", None),
        ("GET", "/v1/usage?filter.user=ev%00il", None),
    ],
)
async def test_nul_over_rest_is_400(
    service: app.Service, method: str, path: str, body: dict[str, Any] | None
) -> None:
    headers = {"organization_id": "acme", "authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as http:
        response = await http.request(method, path, json=body, headers=headers)
    assert response.status_code == 400, response.text
    assert "NUL" in response.json()["error"]["message"]


async def test_nul_in_a_chat_user_is_400_through_the_sdk(service: app.Service) -> None:
    base = f"http://127.0.0.1:{service.http_port}/v1"
    async with openai.AsyncOpenAI(base_url=base, api_key="k", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(
                model="fake-echo", messages=user_turn("hi"), user=EVIL
            )
        ok = await client.chat.completions.create(model="fake-echo", messages=user_turn("hi"))
    assert raised.value.status_code == 400 and ok.choices[0].message.content == "hi "
