"""The Anthropic provider: Messages API translation both ways, against a real mock upstream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.errors import (
    BadUpstream,
    InvalidRequest,
    ProviderError,
    RateLimited,
    TokenwireError,
    UpstreamUnavailable,
)
from server.providers.base import (
    ContentPart,
    Delta,
    Event,
    FinishReason,
    GenerationRequest,
    Message,
    ModelCard,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from server.providers.http.anthropic import DEFAULT_SUPPORTED, AnthropicProvider
from server.providers.http.config import UpstreamConfig
from tests.providers.http.mock_upstream import Recorder, session_for, stream_response

KEY = "sk-ant-test-SECRET-987654321"
BASE = "http://anthropic.test"
HELLO = GenerationRequest(model="claude-test", messages=(Message(role="user", content="Hello"),))
SCHEMA = (
    '{"type":"object","properties":{"zeta":{"type":"integer","maximum":10},'
    '"alpha":{"type":"string"}},"required":["zeta"]}'
)


def make_config(**overrides: Any) -> UpstreamConfig:
    settings: dict[str, Any] = {"name": "anthropic", "base_url": BASE, "api_key": KEY}
    return UpstreamConfig(**{**settings, **overrides})


def sse(*events: dict[str, Any]) -> bytes:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def message_start(**usage: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-test",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 1},
    }
    return {"type": "message_start", "message": message}


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def block_delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def text(index: int, value: str) -> dict[str, Any]:
    return block_delta(index, {"type": "text_delta", "text": value})


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str | None, **usage: int) -> dict[str, Any]:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    return {"type": "message_delta", "delta": delta, "usage": usage or {"output_tokens": 5}}


STOP = {"type": "message_stop"}
PING = {"type": "ping"}


def simple_reply(reply: str = "Hi", stop_reason: str = "end_turn") -> bytes:
    return sse(
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        PING,
        text(0, reply),
        block_stop(0),
        message_delta(stop_reason),
        STOP,
    )


def provider_for(recorder: Recorder, **overrides: Any) -> AnthropicProvider:
    return AnthropicProvider(make_config(**overrides), session_for(recorder))


async def collect(provider: AnthropicProvider, request: GenerationRequest = HELLO) -> list[Event]:
    return [event async for event in provider.stream(request)]


async def failure(provider: AnthropicProvider, request: GenerationRequest = HELLO) -> Any:
    with pytest.raises(TokenwireError) as info:
        await collect(provider, request)
    return info.value


def assert_no_key(error: TokenwireError) -> None:
    texts = [str(error), error.message, repr(error), *error.metadata.values()]
    assert not [t for t in texts if KEY in t]


# --- request translation -------------------------------------------------------------------

CONVERSATION = GenerationRequest(
    model="claude-test",
    messages=(
        Message(role="system", content="Be brief."),
        Message(role="developer", content="Answer in English."),
        Message(role="user", content="Look this up."),
        Message(
            role="user",
            content=(
                ContentPart(type="text", text="And this picture:"),
                ContentPart(type="image_url", url="data:image/jpeg;base64,/9j/4A=="),
                ContentPart(type="image_url", url="https://img.test/b.png"),
                ContentPart(type="text", text=""),
            ),
        ),
        Message(
            role="assistant",
            content="Looking.",
            tool_calls=(
                ToolCall(id="toolu_1", name="lookup", arguments='{"zeta":3,"alpha":"x"}'),
                ToolCall(id="toolu_2", name="lookup", arguments=""),
            ),
        ),
        Message(role="tool", tool_call_id="toolu_1", content="42"),
        Message(role="tool", tool_call_id="toolu_2", content=""),
        Message(role="user", content="Thanks."),
    ),
    temperature=0.3,
    top_p=0.8,
    stop=("END",),
    tools=(
        Tool(name="lookup", description="Look it up.", parameters=SCHEMA),
        Tool(name="noargs"),
    ),
    tool_choice=ToolChoice(mode="required"),
    user="user-1",
)


async def test_conversation_is_sent_as_exact_messages_api_json() -> None:
    recorder = Recorder(stream_response(simple_reply()))
    await collect(provider_for(recorder), CONVERSATION)
    assert recorder.sent() == {
        "model": "claude-test",
        "max_tokens": 4096,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look this up."},
                    {"type": "text", "text": "And this picture:"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/jpeg",
                            "data": "/9j/4A==",
                        },
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://img.test/b.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Looking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "lookup",
                        "input": {"zeta": 3, "alpha": "x"},
                    },
                    {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
                    {"type": "tool_result", "tool_use_id": "toolu_2"},
                    {"type": "text", "text": "Thanks."},
                ],
            },
        ],
        "stream": True,
        "system": "Be brief.\n\nAnswer in English.",
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "top_p": 0.8,
        "tools": [
            {"name": "lookup", "description": "Look it up.", "input_schema": json.loads(SCHEMA)},
            {"name": "noargs", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any"},
        "metadata": {"user_id": "user-1"},
    }


async def test_url_headers_and_verbatim_schema() -> None:
    recorder = Recorder(stream_response(simple_reply()))
    await collect(provider_for(recorder, base_url=BASE + "/"), CONVERSATION)
    request = recorder.requests[-1]
    assert str(request.url) == "http://anthropic.test/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    raw = request.content.decode()
    assert f'"input_schema":{SCHEMA}' in raw  # key order and integers intact
    assert '"input":{"zeta":3,"alpha":"x"}' in raw


async def test_minimal_request_and_max_tokens() -> None:
    recorder = Recorder(stream_response(simple_reply()))
    await collect(provider_for(recorder, default_max_tokens=1000), HELLO)
    assert recorder.sent() == {
        "model": "claude-test",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "stream": True,
    }
    explicit = GenerationRequest(model="claude-test", messages=HELLO.messages, max_tokens=77)
    await collect(provider_for(recorder), explicit)
    assert recorder.sent()["max_tokens"] == 77


async def test_temperature_is_clamped_to_anthropics_range() -> None:
    recorder = Recorder(stream_response(simple_reply()))
    request = GenerationRequest(model="m", messages=HELLO.messages, temperature=1.7)
    await collect(provider_for(recorder), request)
    assert recorder.sent()["temperature"] == 1.0


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("none"), None, {"type": "none"}),
        (ToolChoice("required"), False, {"type": "any", "disable_parallel_tool_use": True}),
        (ToolChoice("function", "lookup"), None, {"type": "tool", "name": "lookup"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
async def test_tool_choice(
    choice: ToolChoice | None, parallel: bool | None, expected: dict[str, Any] | None
) -> None:
    recorder = Recorder(stream_response(simple_reply()))
    request = GenerationRequest(
        model="m",
        messages=HELLO.messages,
        tools=(Tool(name="lookup"),),
        tool_choice=choice,
        parallel_tool_calls=parallel,
    )
    await collect(provider_for(recorder), request)
    assert recorder.sent().get("tool_choice") == expected


async def test_no_tools_means_no_tool_choice() -> None:
    recorder = Recorder(stream_response(simple_reply()))
    request = GenerationRequest(model="m", messages=HELLO.messages, tool_choice=ToolChoice("auto"))
    await collect(provider_for(recorder), request)
    assert "tools" not in recorder.sent()
    assert "tool_choice" not in recorder.sent()


@pytest.mark.parametrize(
    "part",
    [
        ContentPart(type="input_audio", data="UklGRg==", format="wav"),
        ContentPart(type="file", file_id="file-1"),
    ],
)
async def test_content_anthropic_cannot_take_is_an_invalid_request(part: ContentPart) -> None:
    recorder = Recorder(stream_response(simple_reply()))
    request = GenerationRequest(model="m", messages=(Message(role="user", content=(part,)),))
    error = await failure(provider_for(recorder), request)
    assert isinstance(error, InvalidRequest)
    assert recorder.requests == []


async def test_pdf_file_becomes_a_document_block() -> None:
    recorder = Recorder(stream_response(simple_reply()))
    part = ContentPart(type="file", data="data:application/pdf;base64,JVBERi0=", filename="a.pdf")
    request = GenerationRequest(model="m", messages=(Message(role="user", content=(part,)),))
    await collect(provider_for(recorder), request)
    block = recorder.sent()["messages"][0]["content"][0]
    source = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}
    assert block == {"type": "document", "source": source}


async def test_parameters_anthropic_lacks_are_not_supported() -> None:
    provider = provider_for(Recorder(stream_response(simple_reply())))
    assert provider.supported == DEFAULT_SUPPORTED
    assert {"temperature", "top_p", "stop", "tools", "tool_choice"} <= provider.supported
    assert not {"response_format", "logprobs", "seed", "n", "logit_bias"} & provider.supported
    recorder = Recorder(stream_response(simple_reply()))
    request = GenerationRequest(
        model="m",
        messages=HELLO.messages,
        seed=1,
        logprobs=True,
        response_format=ResponseFormat(type="json_object"),
    )
    await collect(provider_for(recorder), request)
    assert not {"seed", "logprobs", "response_format"} & set(recorder.sent())


# --- stream translation --------------------------------------------------------------------


async def test_text_thinking_and_usage() -> None:
    body = sse(
        message_start(
            input_tokens=20,
            cache_read_input_tokens=100,
            cache_creation_input_tokens=5,
            output_tokens=1,
        ),
        block_start(0, {"type": "thinking", "thinking": ""}),
        block_delta(0, {"type": "thinking_delta", "thinking": "Let me see."}),
        block_delta(0, {"type": "signature_delta", "signature": "c2ln"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        text(1, "Hel"),
        PING,
        text(1, "lo"),
        block_stop(1),
        message_delta("end_turn", output_tokens=12),
        STOP,
    )
    events = await collect(provider_for(Recorder(stream_response(body))))
    assert events == [
        Delta(reasoning="Let me see."),
        Delta(content="Hel"),
        Delta(content="lo"),
        Delta(finish_reason=FinishReason.STOP),
        Usage(prompt_tokens=125, completion_tokens=12, cached_tokens=100, cache_write_tokens=5),
    ]


async def test_tool_use_blocks_become_tool_call_deltas() -> None:
    def args(index: int, partial: str) -> dict[str, Any]:
        return block_delta(index, {"type": "input_json_delta", "partial_json": partial})

    body = sse(
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        text(0, "Checking."),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_a", "name": "lookup", "input": {}}),
        args(1, ""),
        args(1, '{"zeta":'),
        args(1, " 3}"),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_b", "name": "other", "input": {}}),
        args(2, "{}"),
        block_stop(2),
        message_delta("tool_use"),
        STOP,
    )
    events = await collect(provider_for(Recorder(stream_response(body))))
    # Block 1 and 2 are tool calls 0 and 1: text blocks do not count.
    assert events[:-1] == [
        Delta(content="Checking."),
        Delta(tool_calls=(ToolCallDelta(index=0, id="toolu_a", name="lookup"),)),
        Delta(tool_calls=(ToolCallDelta(index=0, arguments='{"zeta":'),)),
        Delta(tool_calls=(ToolCallDelta(index=0, arguments=" 3}"),)),
        Delta(tool_calls=(ToolCallDelta(index=1, id="toolu_b", name="other"),)),
        Delta(tool_calls=(ToolCallDelta(index=1, arguments="{}"),)),
        Delta(finish_reason=FinishReason.TOOL_CALLS),
    ]


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", FinishReason.STOP),
        ("stop_sequence", FinishReason.STOP),
        ("max_tokens", FinishReason.LENGTH),
        ("tool_use", FinishReason.TOOL_CALLS),
        ("refusal", FinishReason.CONTENT_FILTER),
        ("something_new", FinishReason.STOP),
    ],
)
async def test_stop_reasons(stop_reason: str, expected: FinishReason) -> None:
    body = simple_reply(stop_reason=stop_reason)
    events = await collect(provider_for(Recorder(stream_response(body))))
    assert events[-2] == Delta(finish_reason=expected)


async def test_a_stop_without_stop_reason_still_finishes() -> None:
    body = sse(message_start(), text(0, "Hi"), message_delta(None), STOP)
    events = await collect(provider_for(Recorder(stream_response(body))))
    assert events[:2] == [Delta(content="Hi"), Delta(finish_reason=FinishReason.STOP)]


async def test_usage_is_estimated_when_the_upstream_reports_none() -> None:
    body = b'event: message_start\ndata: {"type":"message_start","message":{"id":"m"}}\n\n' + sse(
        text(0, "abcdefgh"), {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}, STOP
    )
    events = await collect(provider_for(Recorder(stream_response(body))))
    # "Hello" is 5 characters, the answer 8: ~4 characters a token, rounded up.
    assert events[-1] == Usage(prompt_tokens=2, completion_tokens=2, estimated=True)


# --- errors --------------------------------------------------------------------------------


def error_event(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("overloaded_error", UpstreamUnavailable),
        ("api_error", ProviderError),
        ("rate_limit_error", RateLimited),
        ("invalid_request_error", InvalidRequest),
    ],
)
async def test_error_events_become_typed_errors(kind: str, expected: type[TokenwireError]) -> None:
    body = sse(message_start(), text(0, "Hi"), error_event(kind, "Overloaded"))
    provider = provider_for(Recorder(stream_response(body)))
    seen: list[Event] = []
    with pytest.raises(TokenwireError) as info:
        async for event in provider.stream(HELLO):
            seen.append(event)
    assert seen == [Delta(content="Hi")]
    assert type(info.value) is expected
    assert info.value.metadata["upstream_message"] == "Overloaded"


async def test_overloaded_is_503_and_rate_limit_has_a_retry_after() -> None:
    overloaded = await failure(
        provider_for(Recorder(stream_response(sse(error_event("overloaded_error", "x")))))
    )
    assert overloaded.http_status == 503
    limited = await failure(
        provider_for(Recorder(stream_response(sse(error_event("rate_limit_error", "x")))))
    )
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == 1.0


@pytest.mark.parametrize(("status", "expected"), [(529, UpstreamUnavailable), (500, ProviderError)])
async def test_http_errors(status: int, expected: type[TokenwireError]) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    error = await failure(provider_for(Recorder(httpx.Response(status, json=body))))
    assert type(error) is expected
    assert error.metadata["upstream_message"] == "Overloaded"


async def test_http_429_uses_retry_after() -> None:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    response = httpx.Response(429, headers={"retry-after": "12"}, json=body)
    error = await failure(provider_for(Recorder(response)))
    assert isinstance(error, RateLimited)
    assert error.retry_after == 12.0


async def test_http_400_keeps_the_upstream_message_without_the_key() -> None:
    message = f"messages: roles must alternate (key {KEY})"
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    error = await failure(provider_for(Recorder(httpx.Response(400, json=body))))
    assert isinstance(error, InvalidRequest)
    assert error.metadata["upstream_message"] == "messages: roles must alternate (key [redacted])"
    assert_no_key(error)


async def test_error_events_never_carry_the_key() -> None:
    body = sse(error_event("authentication_error", f"invalid x-api-key {KEY}"))
    error = await failure(provider_for(Recorder(stream_response(body))))
    assert type(error) is ProviderError
    assert_no_key(error)


async def test_a_stream_without_message_stop_is_bad_upstream() -> None:
    body = sse(message_start(), text(0, "Hi"), message_delta("end_turn"))
    error = await failure(provider_for(Recorder(stream_response(body))))
    assert isinstance(error, BadUpstream)


@pytest.mark.parametrize(
    "data",
    [
        "{oops",
        json.dumps(
            {
                "type": "content_block_delta",
                "index": 9,
                "delta": {"type": "input_json_delta", "partial_json": "{"},
            }
        ),
        json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}),
    ],
)
async def test_garbage_events_are_bad_upstream(data: str) -> None:
    body = sse(message_start()) + f"event: x\ndata: {data}\n\n".encode()
    error = await failure(provider_for(Recorder(stream_response(body))))
    assert isinstance(error, BadUpstream)


# --- lifecycle -----------------------------------------------------------------------------


class EndlessBody(httpx.AsyncByteStream):
    """A response body that sends `first`, then waits until it is closed."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.closed = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        await asyncio.Event().wait()  # never set: only closing ends this body
        yield b""  # pragma: no cover

    async def aclose(self) -> None:
        self.closed.set()


async def test_closing_the_stream_early_closes_the_upstream_response() -> None:
    body = EndlessBody(sse(message_start(), text(0, "Hel")))
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)
    provider = provider_for(Recorder(response))
    stream = provider.stream(HELLO)
    assert await anext(stream) == Delta(content="Hel")
    assert not body.closed.is_set()
    await stream.aclose()
    # The provider's session stays open: only aclose can have closed the connection.
    await asyncio.wait_for(body.closed.wait(), timeout=5)


async def test_name_models_and_aclose() -> None:
    card = ModelCard(id="claude-test", owned_by="anthropic", context_length=200_000)
    session = session_for(Recorder(httpx.Response(200)))
    provider = AnthropicProvider(make_config(models=(card,)), session)
    assert provider.name == "anthropic"
    assert provider.models() == (card,)
    await provider.aclose()
    assert not session.closed  # a session handed in belongs to the caller
    owned = AnthropicProvider(make_config())
    await owned.aclose()
    with pytest.raises(RuntimeError, match="anthropic is closed"):
        await collect(owned)
