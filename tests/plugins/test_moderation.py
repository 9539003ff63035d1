"""The `moderation` plugin against a real OpenAI-shaped `/v1/moderations` server on
127.0.0.1: flagged input is a 403 `content_flagged` before any model call, over REST (the
openai SDK) and gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import openai
import pytest
from aiohttp import web
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.plugins import moderation
from server.plugins.backend import BackendConfig
from server.plugins.moderation import shortened
from server.plugins.stage import PluginsConfig
from server.providers.fake import FakeProvider
from server.runtime import app
from server.usage.query import UsageFilter
from server.usage.store import UsageStore
from tests.conftest import StartService, sdk, user_turn
from tests.plugins.upstreams import Upstream, openai_moderations, serving
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2, routing_pb2

MODERATION = {"plugins": [{"id": "moderation"}]}


@pytest.fixture
async def moderations() -> AsyncIterator[Upstream]:
    async with serving({"/v1/moderations": openai_moderations}) as upstream:
        yield upstream


async def moderated(
    start_service: StartService, fake: FakeProvider, upstream: Upstream
) -> app.Service:
    config = BackendConfig("openai", f"{upstream.url}/v1", api_key="mod-key", model="mod-1")
    return await start_service([fake], plugins=PluginsConfig(moderation=config))


async def test_rest_flagged_input_is_403_and_no_model_is_called(
    start_service: StartService, fake: FakeProvider, moderations: Upstream
) -> None:
    service = await moderated(start_service, fake, moderations)
    async with sdk(service) as client:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await client.chat.completions.create(
                model="fake-echo",
                messages=[
                    {"role": "system", "content": "be kind"},
                    {"role": "user", "content": "something forbidden!"},
                ],
                extra_body=MODERATION,
            )
    assert caught.value.status_code == 403
    assert caught.value.code == "content_flagged"
    assert "harassment, violence" in caught.value.message
    assert caught.value.response.json()["error"]["metadata"] == {  # OpenRouter's moderation facts
        "reasons": ["harassment", "violence"],
        "flagged_input": "something forbidden!",  # the first flagged input, not "be kind"
        "model_slug": "fake-echo",
    }
    assert not fake.config.seen  # the model was never asked
    assert moderations.bodies[-1] == {
        "model": "mod-1",
        "input": ["be kind", "something forbidden!"],
    }
    assert isinstance(service.usage, UsageStore)
    records = await service.usage.records(UsageFilter(), 10)
    assert records[-1].status == "content_flagged" and records[-1].cost_usd == 0


async def test_rest_clean_input_is_answered(
    start_service: StartService, fake: FakeProvider, moderations: Upstream
) -> None:
    service = await moderated(start_service, fake, moderations)
    async with sdk(service) as client:
        completion = await client.chat.completions.create(
            model="fake-echo", messages=user_turn("a kind word"), extra_body=MODERATION
        )
        plain = await client.chat.completions.create(
            model="fake-echo", messages=user_turn("forbidden but unmoderated")
        )
    assert completion.choices[0].message.content == "a kind word "
    assert plain.choices[0].message.content == "forbidden but unmoderated "
    assert len(moderations.bodies) == 1  # only the request that asked for the plugin


async def test_grpc_flagged_input_is_permission_denied_with_categories(
    start_service: StartService, fake: FakeProvider, moderations: Upstream
) -> None:
    service = await moderated(start_service, fake, moderations)
    request = chat_pb2.CreateChatCompletionRequest(
        model="fake-echo",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="forbidden")],
        plugins=[routing_pb2.Plugin(id="moderation")],
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(request)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    info, metadata = error_details_pb2.ErrorInfo(), struct_pb2.Struct()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(metadata)
    assert (info.reason, info.metadata["categories"]) == ("content_flagged", "violence")
    assert json_format.MessageToDict(metadata) == {  # what REST answers as `error.metadata`
        "reasons": ["violence"],
        "flagged_input": "forbidden",
        "model_slug": "fake-echo",
    }


async def test_without_a_configured_service_the_plugin_is_a_400(
    start_service: StartService, fake: FakeProvider
) -> None:
    service = await start_service([fake])
    async with sdk(service) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="fake-echo", messages=user_turn("hi"), extra_body=MODERATION
            )
    assert caught.value.code == "plugin_not_configured"
    assert "'moderation'" in caught.value.message
    assert not fake.config.seen


async def test_a_failing_moderation_service_is_a_503_not_a_pass(
    start_service: StartService, fake: FakeProvider
) -> None:
    async def broken(request: web.Request, body: object) -> web.Response:
        return web.json_response({"error": "down"}, status=500)

    async with serving({"/v1/moderations": broken}) as upstream:
        service = await moderated(start_service, fake, upstream)
        async with sdk(service) as client:
            with pytest.raises(openai.InternalServerError) as caught:
                await client.chat.completions.create(
                    model="fake-echo", messages=user_turn("hi"), extra_body=MODERATION
                )
    assert caught.value.status_code == 503
    assert caught.value.code == "moderation_unavailable"
    assert not fake.config.seen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("a" * 100, "a" * 100),
        ("a" * 50 + "b" * 51, "a" * 49 + "..." + "b" * 48),
    ],
)
def test_flagged_input_is_cut_in_the_middle_to_100_characters(text: str, expected: str) -> None:
    assert shortened(text) == expected and len(shortened(text)) <= 100


def test_what_a_refusal_repeats_of_the_service_is_bounded() -> None:
    categories = {f"{i:03d}" + "x" * 1000: True for i in range(100)}
    answer = {"results": [{"flagged": False}, {"flagged": True, "categories": categories}]}
    reasons, first = moderation._flagged(answer)
    assert first == 1
    assert len(reasons) == moderation.MAX_REASONS
    assert all(len(r) == moderation.REASON_CHARS for r in reasons)
