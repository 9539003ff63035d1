"""The OpenAI-compatible provider against mock and real 127.0.0.1 upstreams.

Request and chunk translation run against `MockUpstream`, a real HTTP server
on 127.0.0.1 answering with httpx-style handlers; connection failures,
timeouts, dropped streams and early close use a tiny raw HTTP/1.1 server
started on port 0 per test, so what the upstream sees is observed, not assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import pytest

from server.errors import (
    BadUpstream,
    InvalidRequest,
    ProviderError,
    RateLimited,
    TokenwireError,
    Unprocessable,
    UpstreamTimeout,
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
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    TopLogprob,
    Usage,
)
from server.providers.http.config import UpstreamConfig
from server.providers.http.openai import DEFAULT_SUPPORTED, OpenAICompatProvider
from server.providers.http.session import env_proxy
from tests.providers.http.mock_upstream import (
    Handler,
    MockUpstream,
    Recorder,
    session_for,
    stream_response,
)
from tests.providers.http.raw_server import http_chunk, refused_port, serving

KEY = "sk-test-SECRET-0123456789"
BASE = "http://upstream.test/v1"
HELLO = GenerationRequest(model="gpt-test", messages=(Message(role="user", content="Hello"),))
# Integers, floats and a key order that sorting would change: all must survive.
SCHEMA = (
    '{"type":"object","properties":{"zeta":{"type":"integer","minimum":1,"maximum":10},'
    '"alpha":{"type":"number","multipleOf":0.5}},"required":["zeta","alpha"],'
    '"additionalProperties":false}'
)


def make_config(**overrides: Any) -> UpstreamConfig:
    settings: dict[str, Any] = {"name": "openai", "base_url": BASE, "api_key": KEY}
    return UpstreamConfig(**{**settings, **overrides})


def sse(*chunks: dict[str, Any] | str, done: bool = True) -> bytes:
    lines = [f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n" for c in chunks]
    return "".join(lines + (["data: [DONE]\n\n"] if done else [])).encode()


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choice = {"index": extra.pop("index", 0), "delta": delta or {}, "finish_reason": finish}
    choice.update(extra)
    return {"id": "c1", "object": "chat.completion.chunk", "choices": [choice]}


def usage_chunk(**usage: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": usage}


def provider_for(handler: Handler, **overrides: Any) -> OpenAICompatProvider:
    return OpenAICompatProvider(make_config(**overrides), session_for(handler))


async def collect(
    provider: OpenAICompatProvider, request: GenerationRequest = HELLO
) -> list[Event]:
    return [event async for event in provider.stream(request)]


async def failure(provider: OpenAICompatProvider, request: GenerationRequest = HELLO) -> Any:
    """The error the stream raises, after asserting it raises one."""
    with pytest.raises(TokenwireError) as info:
        await collect(provider, request)
    return info.value


def assert_no_key(error: TokenwireError) -> None:
    texts = [str(error), error.message, repr(error), *error.metadata.values()]
    assert not [t for t in texts if KEY in t]


# --- request translation -------------------------------------------------------------------


FULL_REQUEST = GenerationRequest(
    model="gpt-test",
    messages=(
        Message(role="system", content="Be brief."),
        Message(
            role="user",
            name="ann",
            content=(
                ContentPart(type="text", text="What is this?"),
                ContentPart(type="image_url", url="https://img.test/a.png", detail="low"),
                ContentPart(type="input_audio", data="UklGRg==", format="wav"),
                ContentPart(type="file", data="data:application/pdf;base64,JVBE", filename="a.pdf"),
            ),
        ),
        Message(
            role="assistant",
            content=None,
            tool_calls=(ToolCall(id="call_1", name="lookup", arguments='{"zeta":3}'),),
        ),
        Message(role="tool", tool_call_id="call_1", content="42"),
    ),
    temperature=0.5,
    top_p=0.9,
    max_tokens=64,
    stop=("\n\n", "END"),
    seed=7,
    n=2,
    frequency_penalty=0.1,
    presence_penalty=-0.2,
    logit_bias={50256: -100.0, 13: 5.0},
    logprobs=True,
    top_logprobs=3,
    response_format=ResponseFormat(type="json_schema", schema=SCHEMA, name="answer", strict=True),
    tools=(Tool(name="lookup", description="Look it up.", parameters=SCHEMA, strict=True),),
    tool_choice=ToolChoice(mode="function", function="lookup"),
    parallel_tool_calls=False,
    reasoning_effort="low",
    user="user-1",
)


async def test_full_request_is_sent_as_exact_openai_json() -> None:
    recorder = Recorder(stream_response(sse(chunk({"content": "ok"}, "stop"))))
    await collect(provider_for(recorder), FULL_REQUEST)
    schema = json.loads(SCHEMA)
    assert recorder.sent() == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "name": "ann",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://img.test/a.png", "detail": "low"},
                    },
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {
                        "type": "file",
                        "file": {
                            "file_data": "data:application/pdf;base64,JVBE",
                            "filename": "a.pdf",
                        },
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"zeta":3}'},
                    }
                ],
            },
            {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 7,
        "frequency_penalty": 0.1,
        "presence_penalty": -0.2,
        "top_logprobs": 3,
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "user": "user-1",
        "stop": ["\n\n", "END"],
        "n": 2,
        "logit_bias": {"50256": -100.0, "13": 5.0},
        "logprobs": True,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Look it up.",
                    "parameters": schema,
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    }


async def test_tool_schema_travels_verbatim_key_order_and_integers() -> None:
    recorder = Recorder(stream_response(sse(chunk({"content": "ok"}, "stop"))))
    await collect(provider_for(recorder), FULL_REQUEST)
    raw = recorder.requests[-1].content.decode()
    # The schema's own text, compacted the way httpx writes JSON, appears as is:
    # `zeta` before `alpha`, `1` and `10` not `1.0` and `10.0`.
    assert f'"parameters":{SCHEMA}' in raw
    assert f'"schema":{SCHEMA}' in raw
    parameters = recorder.sent()["tools"][0]["function"]["parameters"]
    assert list(parameters["properties"]) == ["zeta", "alpha"]
    assert type(parameters["properties"]["zeta"]["maximum"]) is int


async def test_minimal_request_sends_only_what_is_set() -> None:
    recorder = Recorder(stream_response(sse(chunk({"content": "ok"}, "stop"))))
    await collect(provider_for(recorder), HELLO)
    assert recorder.sent() == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "Hello"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_url_headers_and_max_tokens_name_follow_the_config() -> None:
    recorder = Recorder(stream_response(sse(chunk({"content": "ok"}, "stop"))))
    provider = provider_for(
        recorder,
        base_url=BASE + "/",
        headers={"HTTP-Referer": "https://tokenwire.test"},
        max_tokens_param="max_completion_tokens",
    )
    await collect(provider, GenerationRequest(model="o3", messages=HELLO.messages, max_tokens=9))
    request = recorder.requests[-1]
    assert str(request.url) == "http://upstream.test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["http-referer"] == "https://tokenwire.test"
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["user-agent"].startswith("tokenwire/")
    assert recorder.sent()["max_completion_tokens"] == 9
    assert "max_tokens" not in recorder.sent()


async def test_no_api_key_sends_no_authorization() -> None:
    recorder = Recorder(stream_response(sse(chunk({"content": "ok"}, "stop"))))
    await collect(provider_for(recorder, api_key=None))
    assert "authorization" not in recorder.requests[-1].headers


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("auto", "auto"), ("none", "none"), ("required", "required")],
)
async def test_tool_choice_modes(choice: str, expected: str) -> None:
    recorder = Recorder(stream_response(sse(chunk({"content": "ok"}, "stop"))))
    request = GenerationRequest(
        model="m", messages=HELLO.messages, tools=(Tool(name="f"),), tool_choice=ToolChoice(choice)
    )
    await collect(provider_for(recorder), request)
    assert recorder.sent()["tool_choice"] == expected
    assert recorder.sent()["tools"] == [{"type": "function", "function": {"name": "f"}}]


async def test_json_object_response_format() -> None:
    recorder = Recorder(stream_response(sse(chunk({"content": "{}"}, "stop"))))
    request = GenerationRequest(
        model="m", messages=HELLO.messages, response_format=ResponseFormat(type="json_object")
    )
    await collect(provider_for(recorder), request)
    assert recorder.sent()["response_format"] == {"type": "json_object"}


async def test_invalid_tool_schema_text_is_an_invalid_request() -> None:
    recorder = Recorder(stream_response(sse(chunk({"content": "ok"}, "stop"))))
    request = GenerationRequest(
        model="m", messages=HELLO.messages, tools=(Tool(name="f", parameters="{nope"),)
    )
    error = await failure(provider_for(recorder), request)
    assert isinstance(error, InvalidRequest)
    assert error.param == "tools"
    assert recorder.requests == []  # refused before anything was sent


# --- stream translation --------------------------------------------------------------------


async def test_text_reasoning_refusal_finish_and_usage() -> None:
    body = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning": "Think", "reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing."}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({"refusal": "No."}),
        chunk({}, "stop"),
        usage_chunk(
            prompt_tokens=12,
            completion_tokens=5,
            total_tokens=17,
            prompt_tokens_details={"cached_tokens": 8},
            completion_tokens_details={"reasoning_tokens": 2},
        ),
    )
    events = await collect(provider_for(Recorder(stream_response(body))))
    assert events == [
        Delta(reasoning="Think"),
        Delta(reasoning="ing."),
        Delta(content="Hel"),
        Delta(content="lo"),
        Delta(refusal="No."),
        Delta(finish_reason=FinishReason.STOP),
        Usage(prompt_tokens=12, completion_tokens=5, cached_tokens=8, reasoning_tokens=2),
    ]


async def test_tool_call_deltas_keep_index_and_send_id_and_name_once() -> None:
    def call(
        index: int, args: str, call_id: str | None = None, name: str | None = None
    ) -> dict[str, Any]:
        function: dict[str, Any] = {"arguments": args}
        if name:
            function["name"] = name
        out: dict[str, Any] = {"index": index, "type": "function", "function": function}
        if call_id:
            out["id"] = call_id
        return out

    body = sse(
        chunk({"tool_calls": [call(0, "", "call_a", "lookup")]}),
        # This upstream repeats id and name on later deltas: they must not repeat downstream.
        chunk({"tool_calls": [call(0, '{"q":', "call_a", "lookup")]}),
        chunk({"tool_calls": [call(1, '{"x":1}', "call_b", "other")]}),
        chunk({"tool_calls": [call(0, '"a"}')]}),
        chunk({}, "tool_calls"),
        usage_chunk(prompt_tokens=3, completion_tokens=4),
    )
    events = await collect(provider_for(Recorder(stream_response(body))))
    assert events == [
        Delta(tool_calls=(ToolCallDelta(index=0, id="call_a", name="lookup"),)),
        Delta(tool_calls=(ToolCallDelta(index=0, arguments='{"q":'),)),
        Delta(tool_calls=(ToolCallDelta(index=1, id="call_b", name="other", arguments='{"x":1}'),)),
        Delta(tool_calls=(ToolCallDelta(index=0, arguments='"a"}'),)),
        Delta(finish_reason=FinishReason.TOOL_CALLS),
        Usage(prompt_tokens=3, completion_tokens=4),
    ]


async def test_tool_calls_without_index_are_matched_by_id_then_order() -> None:
    body = sse(
        chunk({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{"}}]}),
        chunk({"tool_calls": [{"function": {"arguments": "}"}}]}),
        chunk({"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
    )
    events = await collect(provider_for(Recorder(stream_response(body))))
    calls = [c for e in events if isinstance(e, Delta) for c in e.tool_calls]
    assert calls == [
        ToolCallDelta(index=0, id="a", name="f", arguments="{"),
        ToolCallDelta(index=0, arguments="}"),
        ToolCallDelta(index=1, id="b", name="g", arguments="{}"),
    ]


async def test_logprobs_and_several_choices() -> None:
    logprobs = {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.25,
                "bytes": [72, 105],
                "top_logprobs": [
                    {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
                    {"token": "Yo", "logprob": -2.0, "bytes": None},
                ],
            }
        ]
    }
    body = sse(
        chunk({"content": "Hi"}, logprobs=logprobs),
        chunk({"content": "Yo"}, index=1),
        chunk({}, "length", index=1),
        chunk({}, "stop"),
        usage_chunk(prompt_tokens=1, completion_tokens=2),
    )
    events = await collect(provider_for(Recorder(stream_response(body))))
    top = (TopLogprob("Hi", -0.25, (72, 105)), TopLogprob("Yo", -2.0, ()))
    assert events[:4] == [
        Delta(content="Hi", logprobs=(TokenLogprob("Hi", -0.25, (72, 105), top),)),
        Delta(content="Yo", choice=1),
        Delta(finish_reason=FinishReason.LENGTH, choice=1),
        Delta(finish_reason=FinishReason.STOP),
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("stop", FinishReason.STOP),
        ("length", FinishReason.LENGTH),
        ("tool_calls", FinishReason.TOOL_CALLS),
        ("function_call", FinishReason.TOOL_CALLS),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("eos", FinishReason.STOP),
    ],
)
async def test_finish_reasons(raw: str, expected: FinishReason) -> None:
    events = await collect(provider_for(Recorder(stream_response(sse(chunk({}, raw))))))
    assert events[0] == Delta(finish_reason=expected)


async def test_usage_is_estimated_when_the_upstream_sends_none() -> None:
    # 20 characters of prompt and 9 of output: ~4 characters a token, rounded up.
    request = GenerationRequest(model="m", messages=(Message(role="user", content="x" * 20),))
    body = sse(chunk({"content": "abcd"}), chunk({"reasoning": "efghi"}, "stop"))
    events = await collect(provider_for(Recorder(stream_response(body))), request)
    assert events[-1] == Usage(prompt_tokens=5, completion_tokens=3, estimated=True)


async def test_finish_without_done_is_a_complete_stream() -> None:
    body = sse(chunk({"content": "ok"}, "stop"), done=False)
    events = await collect(provider_for(Recorder(stream_response(body))))
    assert events[0] == Delta(content="ok", finish_reason=FinishReason.STOP)
    assert isinstance(events[-1], Usage)


async def test_events_after_done_are_not_read() -> None:
    body = sse(chunk({"content": "ok"}, "stop")) + b"data: not json\n\n"
    events = await collect(provider_for(Recorder(stream_response(body))))
    assert len(events) == 2


# --- errors from statuses and bodies -------------------------------------------------------


async def test_429_with_retry_after_is_rate_limited() -> None:
    body = json.dumps({"error": {"message": "Slow down", "type": "requests"}}).encode()
    response = httpx.Response(429, headers={"retry-after": "7"}, content=body)
    error = await failure(provider_for(Recorder(response)))
    assert isinstance(error, RateLimited)
    assert error.retry_after == 7.0
    assert error.metadata["upstream_message"] == "Slow down"
    assert error.metadata["retry_after"] == "7"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 1.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "soon"}, 1.0),
        ({"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}, 0.0),
        ({"retry-after-ms": "2500", "retry-after": "9"}, 2.5),
    ],
)
async def test_retry_after_forms(headers: dict[str, str], expected: float) -> None:
    error = await failure(provider_for(Recorder(httpx.Response(429, headers=headers))))
    assert isinstance(error, RateLimited)
    assert error.retry_after == expected


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, ProviderError),
        (502, ProviderError),
        (503, UpstreamUnavailable),
        (529, UpstreamUnavailable),
    ],
)
async def test_5xx_is_a_provider_error(status: int, kind: type[ProviderError]) -> None:
    """Only 503 and 529 say the upstream did not take the request on (it may be re-sent)."""
    error = await failure(provider_for(Recorder(httpx.Response(status, text="boom"))))
    assert type(error) is kind
    assert error.http_status == 503
    assert error.metadata["upstream_status"] == str(status)
    assert error.metadata["upstream_message"] == "boom"
    assert "retry_after" not in error.metadata


async def test_a_503_saying_when_to_come_back_carries_it() -> None:
    answer = httpx.Response(503, text="busy", headers={"retry-after": "2.5"})
    error = await failure(provider_for(Recorder(answer)))
    assert type(error) is UpstreamUnavailable
    assert error.metadata["retry_after"] == "3"  # whole seconds, rounded up, as for a 429


@pytest.mark.parametrize(
    ("status", "kind"), [(400, InvalidRequest), (404, InvalidRequest), (422, Unprocessable)]
)
async def test_4xx_keeps_the_upstream_message(status: int, kind: type[TokenwireError]) -> None:
    body = {"error": {"message": "This model's maximum context length is 8192 tokens."}}
    error = await failure(provider_for(Recorder(httpx.Response(status, json=body))))
    assert type(error) is kind
    assert error.metadata["upstream_message"] == body["error"]["message"]
    assert "maximum context length" in error.message


async def test_fastapi_style_detail_message() -> None:
    response = httpx.Response(400, json={"detail": "unknown model"})
    error = await failure(provider_for(Recorder(response)))
    assert error.metadata["upstream_message"] == "unknown model"


@pytest.mark.parametrize("status", [408, 504])
async def test_upstream_timeouts_statuses(status: int) -> None:
    error = await failure(provider_for(Recorder(httpx.Response(status))))
    assert isinstance(error, UpstreamTimeout)


async def test_garbage_chunk_is_bad_upstream() -> None:
    body = sse(chunk({"content": "ok"}), "{not json", chunk({}, "stop"))
    provider = provider_for(Recorder(stream_response(body)))
    seen: list[Event] = []
    with pytest.raises(BadUpstream):
        async for event in provider.stream(HELLO):
            seen.append(event)
    assert seen == [Delta(content="ok")]


@pytest.mark.parametrize(
    "bad",
    [
        "[1, 2]",
        json.dumps({"choices": [{"index": 0, "delta": {"content": 5}}]}),
        json.dumps({"choices": "nope"}),
    ],
)
async def test_chunks_of_the_wrong_shape_are_bad_upstream(bad: str) -> None:
    error = await failure(provider_for(Recorder(stream_response(sse(bad)))))
    assert isinstance(error, BadUpstream)


async def test_stream_ending_without_done_or_finish_is_bad_upstream() -> None:
    body = sse(chunk({"content": "half"}), done=False)
    error = await failure(provider_for(Recorder(stream_response(body))))
    assert isinstance(error, BadUpstream)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"message": "Rate limit exceeded", "code": 429}, RateLimited),
        ({"message": "busy", "type": "server_error"}, ProviderError),
        ({"message": "bad", "code": "context_length_exceeded"}, InvalidRequest),
    ],
)
async def test_error_object_inside_the_stream_is_typed(
    error: dict[str, Any], kind: type[TokenwireError]
) -> None:
    body = sse(chunk({"content": "a"}), {"error": error})
    raised = await failure(provider_for(Recorder(stream_response(body))))
    assert type(raised) is kind
    assert raised.metadata["upstream_message"] == error["message"]


async def test_a_200_json_error_instead_of_a_stream_is_typed() -> None:
    response = httpx.Response(200, json={"error": {"message": "overloaded", "code": 503}})
    error = await failure(provider_for(Recorder(response)))
    assert type(error) is UpstreamUnavailable
    plain = await failure(provider_for(Recorder(httpx.Response(200, json={"id": "x"}))))
    assert isinstance(plain, BadUpstream)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": {"message": f"Incorrect API key provided: {KEY}."}}),
        (400, {"error": {"message": f"bad header x-api-key={KEY}"}}),
        (429, {"error": f"key {KEY} is over quota"}),
        (500, {"detail": KEY}),
        (200, {"error": {"message": f"key {KEY}", "code": 402}}),
    ],
)
async def test_the_api_key_never_appears_in_errors(status: int, body: dict[str, Any]) -> None:
    error = await failure(provider_for(Recorder(httpx.Response(status, json=body))))
    assert_no_key(error)
    assert "[redacted]" in error.metadata["upstream_message"]


async def test_the_api_key_never_appears_in_garbage_chunk_errors() -> None:
    error = await failure(provider_for(Recorder(stream_response(sse(f"echo {KEY}")))))
    assert isinstance(error, BadUpstream)
    assert_no_key(error)


def test_the_api_key_stays_out_of_the_config_repr() -> None:
    assert KEY not in repr(make_config())


@pytest.mark.parametrize(
    "overrides",
    [{"base_url": "upstream.test/v1"}, {"base_url": "ftp://x/v1"}, {"first_byte_timeout": 0}],
)
def test_config_mistakes_are_refused_at_construction(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_config(**overrides)


def test_config_headers_are_copied_and_frozen() -> None:
    headers = {"x-a": "1"}
    config = make_config(headers=headers)
    headers["x-a"] = "2"
    assert config.headers == {"x-a": "1"}
    with pytest.raises(TypeError):
        config.headers["x-a"] = "3"  # type: ignore[index]


async def test_upstream_401_is_not_blamed_on_the_caller() -> None:
    error = await failure(provider_for(Recorder(httpx.Response(401, json={"error": "no"}))))
    assert type(error) is ProviderError


# --- provider surface ----------------------------------------------------------------------


async def test_name_supported_models_and_aclose() -> None:
    card = ModelCard(id="gpt-test", owned_by="openai")
    session = session_for(Recorder(httpx.Response(200)))
    provider = OpenAICompatProvider(make_config(models=(card,)), session)
    assert provider.name == "openai"
    assert provider.supported == DEFAULT_SUPPORTED
    assert {"response_format", "tools", "logprobs", "seed", "logit_bias"} <= provider.supported
    assert provider.models() == (card,)
    await provider.aclose()
    assert not session.closed  # a session handed in belongs to the caller
    narrowed = OpenAICompatProvider(make_config(supported=frozenset({"temperature"})), session)
    assert narrowed.supported == {"temperature"}


async def test_a_provider_closes_the_session_it_created() -> None:
    sessions: list[aiohttp.ClientSession] = []

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + data(chunk({"content": "a"}, "stop")) + b"0\r\n\r\n")
        await writer.drain()

    async with real_upstream(behaviour) as url:
        provider = OpenAICompatProvider(make_config(base_url=url))
        await collect(provider)
        sessions.append(provider._pooled())
        await provider.aclose()
    assert sessions[0].closed
    with pytest.raises(RuntimeError, match="openai is closed"):
        await collect(provider)


async def test_cookies_an_upstream_sets_are_not_sent_back(mock_upstream: MockUpstream) -> None:
    answer = stream_response(sse(chunk({"content": "ok"}, "stop")), **{"set-cookie": "s=1"})
    recorder = Recorder(answer)
    # By name: a cookie jar would drop cookies from a bare IP address anyway.
    url = mock_upstream.url(recorder).replace("127.0.0.1", "localhost")
    provider = OpenAICompatProvider(make_config(base_url=url + "/v1"))
    try:
        await collect(provider)
        await collect(provider)
    finally:
        await provider.aclose()
    assert len(recorder.requests) == 2
    assert "cookie" not in recorder.requests[1].headers


async def test_the_proxy_from_the_environment_is_used(
    mock_upstream: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(stream_response(sse(chunk({"content": "ok"}, "stop"))))
    monkeypatch.setenv("HTTP_PROXY", mock_upstream.url(recorder))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    # A name that resolves nowhere: only the proxy can have answered.
    provider = OpenAICompatProvider(make_config(base_url="http://upstream.invalid/v1"))
    try:
        events = await collect(provider)
    finally:
        await provider.aclose()
    assert events[0] == Delta(content="ok", finish_reason=FinishReason.STOP)
    assert str(recorder.requests[0].url) == "http://upstream.invalid/v1/chat/completions"


def test_no_proxy_exempts_its_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "internal.test")
    monkeypatch.delenv("no_proxy", raising=False)
    assert env_proxy("http://api.test/v1") == "http://proxy.test:3128"
    assert env_proxy("http://vllm.internal.test/v1") is None


# --- a real upstream on 127.0.0.1 ----------------------------------------------------------

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)


@contextlib.asynccontextmanager
async def real_upstream(behaviour: Behaviour) -> AsyncIterator[str]:
    """An HTTP/1.1 server on 127.0.0.1:0 that reads one request, then does `behaviour`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await behaviour(reader, writer)

    async with serving(serve) as port:
        yield f"http://127.0.0.1:{port}/v1"


@contextlib.asynccontextmanager
async def real_provider(
    behaviour: Behaviour, **overrides: Any
) -> AsyncIterator[OpenAICompatProvider]:
    async with real_upstream(behaviour) as url:
        provider = OpenAICompatProvider(make_config(base_url=url, **overrides))
        try:
            yield provider
        finally:
            await provider.aclose()


def data(payload: dict[str, Any]) -> bytes:
    return http_chunk(f"data: {json.dumps(payload)}\n\n".encode())


async def test_closing_the_stream_early_disconnects_the_upstream() -> None:
    disconnected = asyncio.Event()

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + data(chunk({"content": "Hel"})))
        await writer.drain()
        await reader.read()  # returns only when the client closes its end
        disconnected.set()

    async with real_provider(behaviour) as provider:
        stream = provider.stream(HELLO)
        assert await anext(stream) == Delta(content="Hel")
        assert not disconnected.is_set()
        await stream.aclose()
        # The provider and its session stay open: only aclose can have closed the connection.
        await asyncio.wait_for(disconnected.wait(), timeout=5)


async def test_connection_refused_is_upstream_unavailable() -> None:
    port = refused_port()
    provider = OpenAICompatProvider(make_config(base_url=f"http://127.0.0.1:{port}/v1"))
    error = await failure(provider)
    await provider.aclose()
    assert type(error) is UpstreamUnavailable  # provably not processed: it may be re-sent
    assert error.http_status == 503
    assert str(port) not in error.message  # no internal addresses leak to callers


async def test_an_upstream_that_never_answers_hits_the_first_byte_timeout() -> None:
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()  # never set: the provider's timeout ends this

    async with real_provider(behaviour, first_byte_timeout=0.2, total_timeout=5) as provider:
        error = await failure(provider)
    assert isinstance(error, UpstreamTimeout)
    assert error.message == "openai sent nothing within 0.2 s"


async def test_headers_without_a_first_chunk_hit_the_first_byte_timeout() -> None:
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD)
        await writer.drain()
        await asyncio.Event().wait()

    async with real_provider(behaviour, first_byte_timeout=0.2, total_timeout=5) as provider:
        error = await failure(provider)
    assert isinstance(error, UpstreamTimeout)
    assert "sent nothing" in error.message


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"total_timeout": 0.3}, "openai did not finish within 0.3 s"),
        (
            {"first_byte_timeout": 0.2, "total_timeout": 5},
            "openai went silent mid-stream for 0.2 s",
        ),
    ],
)
async def test_a_stalled_stream_hits_its_limit(limits: dict[str, float], message: str) -> None:
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + data(chunk({"content": "a"})))
        await writer.drain()
        await asyncio.Event().wait()

    async with real_provider(behaviour, **limits) as provider:
        seen: list[Event] = []
        with pytest.raises(UpstreamTimeout) as info:
            async for event in provider.stream(HELLO):
                seen.append(event)
    assert seen == [Delta(content="a")]
    assert info.value.message == message


async def test_a_connection_dropped_mid_stream_is_a_typed_error() -> None:
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Chunked encoding never terminated: the peer just goes away.
        writer.write(STREAM_HEAD + data(chunk({"content": "a"})))
        await writer.drain()

    async with real_provider(behaviour) as provider:
        seen: list[Event] = []
        with pytest.raises(ProviderError) as info:
            async for event in provider.stream(HELLO):
                seen.append(event)
    assert seen == [Delta(content="a")]
    assert isinstance(info.value, BadUpstream)
    assert info.value.metadata["cause"] == "ClientPayloadError"


async def test_a_connection_closed_cleanly_mid_stream_is_bad_upstream() -> None:
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # No length, no chunking: the body ends when the connection does.
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        writer.write(head + f"data: {json.dumps(chunk({'content': 'a'}))}\n\n".encode())
        await writer.drain()

    async with real_provider(behaviour) as provider:
        error = await failure(provider)
    assert isinstance(error, BadUpstream)


async def test_a_real_upstream_streams_end_to_end() -> None:
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD)
        for payload in (
            chunk({"content": "Hi"}),
            chunk({}, "stop"),
            usage_chunk(prompt_tokens=2, completion_tokens=1),
        ):
            writer.write(data(payload))
        writer.write(http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    async with real_provider(behaviour) as provider:
        events = await collect(provider)
    assert events == [
        Delta(content="Hi"),
        Delta(finish_reason=FinishReason.STOP),
        Usage(prompt_tokens=2, completion_tokens=1),
    ]
