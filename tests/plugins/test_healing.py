"""`response-healing`: the repair and schema check alone, then through the openai SDK
(REST, whole and streamed) and gRPC against a real server whose fake provider answers
with broken JSON."""

from __future__ import annotations

import json
from typing import Any

import grpc
import openai
import pytest

from server.plugins.healing import Healer
from server.providers import base
from server.providers.fake import FakeConfig, FakeProvider
from tests.conftest import StartService, sdk, user_turn
from tests.openai_schema import validate
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2, parameters_pb2, routing_pb2

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
HEALING = [{"id": "response-healing"}]


def schema_format(schema: dict[str, Any] = SCHEMA) -> Any:
    return {"type": "json_schema", "json_schema": {"name": "trip", "schema": schema}}


@pytest.mark.parametrize(
    "answer",
    [
        '```json\n{"city": "Oslo", "days": 3}\n```',  # fenced
        'Here you go: {"city": "Oslo", "days": 3} Enjoy!',  # text around it
        '{"city": "Oslo", "days": 3',  # truncated
        "{'city': 'Oslo', 'days': 3,}",  # single quotes, trailing comma
    ],
)
def test_broken_json_is_healed_and_checked(answer: str) -> None:
    verdict = Healer(SCHEMA).verdict(answer)
    assert verdict.status == chat_pb2.HEALING_STATUS_HEALED
    assert json.loads(verdict.text) == {"city": "Oslo", "days": 3}
    assert verdict.detail is not None and "not valid JSON" in verdict.detail


def test_valid_json_is_left_as_given() -> None:
    text = '{"days": 3,  "city": "Oslo"}'
    verdict = Healer(SCHEMA).verdict(text)
    assert (verdict.status, verdict.text, verdict.detail) == (
        chat_pb2.HEALING_STATUS_VALID,
        text,
        None,
    )


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("I cannot answer that.", "not valid JSON"),
        ('{"city": "Oslo"}', "'days' is a required property"),  # parses, misses the schema
        # repaired, still wrong:
        ('```{"city": "Oslo", "days": "three"}', "is not of type 'integer'"),
        ("[" * 200, "nested more than"),
    ],
)
def test_what_cannot_be_healed_stays_as_given(answer: str, why: str) -> None:
    verdict = Healer(SCHEMA).verdict(answer)
    assert verdict.status == chat_pb2.HEALING_STATUS_UNHEALABLE
    assert verdict.text == answer
    assert verdict.detail is not None and why in verdict.detail


def test_json_object_needs_an_object() -> None:
    assert Healer(None).verdict("[1, 2]").status == chat_pb2.HEALING_STATUS_UNHEALABLE
    assert Healer(None).verdict("{'a': 1").status == chat_pb2.HEALING_STATUS_HEALED


def answering(*pieces: str) -> FakeProvider:
    """A fake model that answers `pieces`, one delta each."""
    script: list[base.Event] = [base.Delta(content=p) for p in pieces]
    script += [base.Delta(finish_reason=base.FinishReason.STOP), base.Usage(5, len(pieces))]
    return FakeProvider(FakeConfig(script=script))


async def test_rest_whole_completion_is_healed(start_service: StartService) -> None:
    service = await start_service([answering('```json\n{"city": "Oslo",', ' "days": 3}\n```')])
    async with sdk(service) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="fake-echo",
            messages=user_turn("plan a trip"),
            response_format=schema_format(),
            extra_body={"plugins": HEALING},
        )
    body = raw.http_response.json()
    validate("CreateChatCompletionResponse", body)
    choice = body["choices"][0]
    assert json.loads(choice["message"]["content"]) == {"city": "Oslo", "days": 3}
    assert choice["healing"]["status"] == "healed"
    assert "not valid JSON" in choice["healing"]["detail"]


async def test_rest_without_the_plugin_nothing_is_touched(start_service: StartService) -> None:
    service = await start_service([answering('```json\n{"city": "Oslo", "days": 3}\n```')])
    async with sdk(service) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="fake-echo",
            messages=user_turn("plan a trip"),
            response_format=schema_format(),
        )
    choice = raw.http_response.json()["choices"][0]
    assert choice["message"]["content"].startswith("```json")
    assert "healing" not in choice


async def test_rest_unhealable_answer_is_marked(start_service: StartService) -> None:
    service = await start_service([answering("Sorry, ", "no JSON today.")])
    async with sdk(service) as client:
        completion = await client.chat.completions.create(
            model="fake-echo",
            messages=user_turn("plan a trip"),
            response_format={"type": "json_object"},
            extra_body={"plugins": HEALING},
        )
    choice = completion.choices[0]
    assert choice.message.content == "Sorry, no JSON today."
    assert choice.model_extra is not None
    assert choice.model_extra["healing"]["status"] == "unhealable"


async def test_rest_stream_passes_through_and_reports_in_the_last_chunk(
    start_service: StartService,
) -> None:
    pieces = ("{'city': ", "'Oslo', ", "'days': 3")
    service = await start_service([answering(*pieces)])
    async with sdk(service) as client:
        stream = await client.chat.completions.create(
            model="fake-echo",
            messages=user_turn("plan a trip"),
            response_format=schema_format(),
            extra_body={"plugins": HEALING},
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "".join(pieces)  # passed through untouched
    verdicts = [c.choices[0].model_extra.get("healing") for c in chunks]  # type: ignore[union-attr]
    assert verdicts[:-1] == [None] * (len(chunks) - 1)
    last = chunks[-1].choices[0]
    assert last.finish_reason == "stop"
    assert verdicts[-1] is not None and verdicts[-1]["status"] == "healed"
    assert json.loads(verdicts[-1]["content"]) == {"city": "Oslo", "days": 3}


async def refused(start_service: StartService, **params: Any) -> openai.BadRequestError:
    """The 400 a request with `params` gets."""
    service = await start_service([answering("{}")])
    async with sdk(service) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="fake-echo", messages=user_turn("x"), **params
            )
    return caught.value


async def test_rest_bad_schema_is_a_400(start_service: StartService) -> None:
    error = await refused(
        start_service,
        response_format=schema_format({"type": "no-such-type"}),
        extra_body={"plugins": HEALING},
    )
    assert error.body["param"] == "response_format.json_schema.schema"  # type: ignore[index]


async def test_rest_unknown_plugin_is_a_400(start_service: StartService) -> None:
    plugins = [{"id": "response-healing"}, {"id": "telepathy"}]
    error = await refused(start_service, extra_body={"plugins": plugins})
    assert error.body["param"] == "plugins[1].id"  # type: ignore[index]
    assert "telepathy" in error.message


def grpc_request(stream: bool = False) -> chat_pb2.CreateChatCompletionRequest:
    return chat_pb2.CreateChatCompletionRequest(
        model="fake-echo",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="trip")],
        parameters=parameters_pb2.GenerationParameters(
            response_format=message_pb2.ResponseFormat(
                type=message_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
                json_schema=message_pb2.JsonSchema(name="trip", schema=json.dumps(SCHEMA)),
            )
        ),
        plugins=[routing_pb2.Plugin(id="response-healing")],
    )


async def test_grpc_whole_and_streamed(start_service: StartService) -> None:
    service = await start_service([answering('{"city": "Oslo", "days": 3} -- done')])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        response = await stub.CreateChatCompletion(grpc_request())
        choice = response.choices[0]
        assert choice.healing.status == chat_pb2.HEALING_STATUS_HEALED
        assert json.loads(choice.message.content) == {"city": "Oslo", "days": 3}
        call = stub.StreamChatCompletion(
            chat_pb2.StreamChatCompletionRequest(request=grpc_request())
        )
        chunks = [r.chunk async for r in call]
    assert chunks[-1].choices[0].healing.status == chat_pb2.HEALING_STATUS_HEALED
    assert not any(c.choices[0].HasField("healing") for c in chunks[:-1])
