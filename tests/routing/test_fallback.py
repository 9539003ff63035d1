"""Routing end to end: the official openai SDK → tokenwire → real HTTP upstreams on 127.0.0.1.

The upstreams (`upstream_server.Upstream`) speak OpenAI's chat completions or Anthropic's
Messages stream and are told per test to fail: refuse connections, hold the first byte,
answer 429/5xx, send garbage, drop the connection or stall mid-stream. Assertions are on
what the client got, what each upstream received, and the one usage record per request.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from openai.types.chat import ChatCompletion

from server.pipeline.context import InProcessSink, UsageRecord
from server.providers.fake import FakeProvider
from server.runtime import app, upstreams
from server.runtime.config import load
from server.usage.query import UsageFilter
from tests.conftest import StartService, sdk
from tests.openai_schema import validate
from tests.routing.upstream_server import (
    DONE,
    Reply,
    Upstream,
    anthropic_event,
    anthropic_text,
    chunk,
    free_port,
    openai_error,
    openai_text,
)
from tests.routing.upstream_server import upstreams as serving
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2

KEY = "sk-upstream-SECRET-0042"
USER: list[Any] = [{"role": "user", "content": "hello"}]
OK = Reply(events=openai_text("hi ", "there"))
NEVER = asyncio.Event()  # never set: an upstream holding on it stalls until the client leaves


# --- helpers ------------------------------------------------------------------------------


def openai_at(url: str, **settings: Any) -> dict[str, Any]:
    return {"base_url": url, "api_key_env": "UP_KEY", **settings}


async def tokenwire(
    start: StartService, providers: dict[str, Any], models: list[dict[str, Any]], **settings: Any
) -> app.Service:
    config = upstreams.parse(providers, models, {"UP_KEY": KEY})
    return await start([], upstreams=config, **settings)


async def chain(
    start: StartService, *urls: str, provider: dict[str, Any] | None = None, **settings: Any
) -> app.Service:
    """Model `m` served by providers p0, p1, … in that order, one per base URL."""
    providers = {f"p{i}": openai_at(url, **(provider or {})) for i, url in enumerate(urls)}
    models = [{"id": "m", "provider": name, "upstream": f"up-{name}"} for name in providers]
    return await tokenwire(start, providers, models, **settings)


async def ask(service: app.Service, **params: Any) -> ChatCompletion:
    async with sdk(service) as client:
        completion: ChatCompletion = await client.chat.completions.create(
            **{"model": "m", "messages": USER, **params}
        )
        return completion


async def refused(service: app.Service, **params: Any) -> openai.APIStatusError:
    """The error a request ends with, checked to be OpenAI-shaped and free of the key."""
    with pytest.raises(openai.APIStatusError) as caught:
        await ask(service, **params)
    response = caught.value.response
    validate("ErrorResponse", response.json())
    assert KEY not in response.text and KEY not in str(response.headers)
    return caught.value


def param(error: openai.APIStatusError) -> Any:
    return error.response.json()["error"]["param"]


def served(completion: Any) -> tuple[str, str]:
    return completion.model, completion.model_extra["provider"]


async def records(service: app.Service) -> list[UsageRecord]:
    """Every usage record the service's sink holds, oldest first (a list, or the database)."""
    if isinstance(service.usage, InProcessSink):
        return service.usage.records
    return list(await service.usage.records(UsageFilter(), 1000))  # type: ignore[union-attr]


async def has_records(service: app.Service, count: int) -> bool:
    return len(await records(service)) == count


async def last(service: app.Service) -> UsageRecord:
    return (await records(service))[-1]


async def attempts(service: app.Service) -> list[tuple[str, str, str, str | None]]:
    return [(a.provider, a.model, a.outcome, a.error) for a in (await last(service)).attempts]


async def eventually(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 5) -> None:
    """Wait, bounded, until `condition()` holds (polling, for state with no event to await)."""
    async with asyncio.timeout(timeout):
        while not await _result(condition()):
            await asyncio.sleep(0.005)


async def _result(value: bool | Awaitable[bool]) -> bool:
    return await value if inspect.isawaitable(value) else bool(value)


def nothing_listening() -> str:
    """A base URL where nothing listens: connections are refused."""
    return f"http://127.0.0.1:{free_port()}/v1"


def grpc_error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


# --- the fake upstream itself -------------------------------------------------------------


async def test_fake_upstream_speaks_openai_streaming_and_not() -> None:
    async with Upstream(OK) as up, openai.AsyncOpenAI(base_url=up.url, api_key=KEY) as direct:
        whole = await direct.chat.completions.create(model="x", messages=USER)
        stream = await direct.chat.completions.create(model="x", messages=USER, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert whole.choices[0].message.content == text == "hi there"


# --- models and provider preferences ------------------------------------------------------


async def test_models_fallback_list(start_service: StartService) -> None:
    async with serving(openai_error(503, "overloaded"), OK) as (a, b):
        providers = {"pa": openai_at(a.url), "pb": openai_at(b.url)}
        models = [{"id": "ma", "provider": "pa"}, {"id": "mb", "provider": "pb"}]
        service = await tokenwire(start_service, providers, models)
        assert (await refused(service, model="ma")).status_code == 503
        completion = await ask(service, model="ma", extra_body={"models": ["mb"]})
    assert served(completion) == ("mb", "pb")
    assert completion.choices[0].message.content == "hi there"
    assert await attempts(service) == [
        ("pa", "ma", "error", "provider_unavailable"),
        ("pb", "mb", "ok", None),
    ]
    record = await last(service)
    ok = record.attempts[1]
    assert (ok.prompt_tokens, ok.completion_tokens) == (3, 2)
    assert all(a.latency_ms > 0 for a in record.attempts)
    assert (record.model, record.provider) == ("mb", "pb")


async def test_order_only_and_ignore_pick_the_provider(start_service: StartService) -> None:
    async with serving(OK, OK, OK) as ups:
        service = await chain(start_service, *(u.url for u in ups))
        picked = {
            "default": await ask(service),
            "order": await ask(service, extra_body={"provider": {"order": ["p2", "p0"]}}),
            "only": await ask(service, extra_body={"provider": {"only": ["p1"]}}),
            "ignore": await ask(service, extra_body={"provider": {"ignore": ["p0", "p1"]}}),
        }
    assert {k: served(c)[1] for k, c in picked.items()} == {
        "default": "p0",
        "order": "p2",
        "only": "p1",
        "ignore": "p2",
    }
    assert [len(u.requests) for u in ups] == [1, 1, 2]


async def test_allow_fallbacks_false_is_the_primarys_error(start_service: StartService) -> None:
    async with serving(openai_error(503, "primary down"), OK) as (a, b):
        service = await chain(start_service, a.url, b.url)
        error = await refused(service, extra_body={"provider": {"allow_fallbacks": False}})
        assert error.status_code == 503 and not b.requests
        assert served(await ask(service)) == ("m", "p1")


async def test_require_parameters(start_service: StartService) -> None:
    async with serving(OK, OK) as (a, b):
        providers = {"p0": openai_at(a.url, supported=["temperature"]), "p1": openai_at(b.url)}
        models = [
            {"id": "m", "provider": "p0"},
            {"id": "m", "provider": "p1"},
            {"id": "solo", "provider": "p0"},
        ]
        service = await tokenwire(start_service, providers, models)
        dropped = await ask(service, seed=7)
        strict = await ask(service, seed=7, extra_body={"provider": {"require_parameters": True}})
        error = await refused(
            service, model="solo", seed=7, extra_body={"provider": {"require_parameters": True}}
        )
    assert served(dropped)[1] == "p0" and (dropped.model_extra or {})["dropped_parameters"] == [
        "seed"
    ]
    assert "seed" not in a.requests[0].body
    assert served(strict)[1] == "p1" and b.requests[0].body["seed"] == 7
    assert error.status_code == 400 and param(error) == "seed"
    assert "seed" in error.message


PREFERENCES = {
    "sort price": {"sort": "price"},
    "sort throughput": {"sort": "throughput"},
    "sort latency": {"sort": "latency"},
    "max_price": {"max_price": {"prompt": 2}},
    "data_collection": {"data_collection": "deny"},
    "zdr": {"zdr": True},
    "quantizations": {"quantizations": ["int4"]},
    "preferred_min_throughput number": {"preferred_min_throughput": 50},
    "preferred_min_throughput percentiles": {"preferred_min_throughput": {"p50": 50, "p99": 10}},
    "preferred_max_latency number": {"preferred_max_latency": 0.5},
    "preferred_max_latency percentiles": {"preferred_max_latency": {"p90": 0.5}},
}


@pytest.mark.parametrize("preference", PREFERENCES.values(), ids=PREFERENCES.keys())
async def test_preference_moves_the_request_to_the_second_provider(
    start_service: StartService, preference: dict[str, Any]
) -> None:
    async with serving(OK, OK) as (a, b):
        providers = {
            "p0": openai_at(a.url, data_collection="allow"),
            "p1": openai_at(b.url, data_collection="deny", zdr=True),
        }
        models = [
            {"id": "m", "provider": "p0", "prompt_price": 5, "quantization": "fp16"},
            {"id": "m", "provider": "p1", "prompt_price": 1, "quantization": "int4"},
        ]
        service = await tokenwire(start_service, providers, models)
        assert service.router is not None
        service.router.stats.observe("p0", "m", 2.0, 100, 10.0)  # slow: 2 s, 10 tokens/s
        service.router.stats.observe("p1", "m", 0.1, 1000, 10.0)  # fast: 0.1 s, 100 tokens/s
        preferred = await ask(service, extra_body={"provider": preference})
        default = await ask(service)
    assert (served(preferred)[1], served(default)[1]) == ("p1", "p0")


# --- transforms ---------------------------------------------------------------------------


async def test_middle_out_drops_the_middle_before_the_upstream(start_service: StartService) -> None:
    chat = [{"role": "system", "content": "be brief"}]
    chat += [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "x" * 100}
        for i in range(30)
    ]
    chat.append({"role": "user", "content": "the latest question"})
    async with Upstream(OK) as up:
        models = [{"id": "m", "provider": "p0", "context_length": 300}]
        service = await tokenwire(start_service, {"p0": openai_at(up.url)}, models)
        await ask(service, messages=chat)
        await ask(service, messages=chat, extra_body={"transforms": ["middle-out"]})
        error = await refused(service, messages=chat, extra_body={"transforms": ["top-down"]})
    whole, cut = (r.body["messages"] for r in up.requests)
    assert whole == chat
    assert cut[0] == chat[0] and cut[1] == chat[1] and cut[-2:] == chat[-2:]
    assert 3 < len(cut) < len(chat)
    assert error.status_code == 400 and param(error) == "transforms[0]"


# --- failing well -------------------------------------------------------------------------

GARBAGE = Reply(events=[b"data: {this is not json\n\n"])
DROPPED = Reply(events=openai_text("never ", "seen"), drop_at=1)  # after the role chunk
FAILURES: dict[str, tuple[Reply | None, str]] = {
    "connection refused": (None, "provider_unavailable"),
    "first byte timeout": (Reply(hold=NEVER), "upstream_timeout"),
    "429": (openai_error(429, "slow down", retry_after="30"), "rate_limit_exceeded"),
    "500": (openai_error(500, "boom"), "provider_unavailable"),
    "503": (openai_error(503, "overloaded"), "provider_unavailable"),
    "malformed chunk": (GARBAGE, "bad_upstream"),
    "dropped before content": (DROPPED, "bad_upstream"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize(("reply", "code"), FAILURES.values(), ids=FAILURES.keys())
async def test_failure_before_the_first_byte_moves_to_the_next_candidate(
    start_service: StartService, reply: Reply | None, code: str, stream: bool
) -> None:
    async with serving(reply or OK, OK) as (bad, good):
        first = bad.url if reply else nothing_listening()
        service = await chain(start_service, first, good.url, provider={"first_byte_timeout": 0.2})
        async with sdk(service) as client:
            if stream:
                text = await streamed_text(client)
            else:
                completion = await client.chat.completions.create(model="m", messages=USER)
                text = completion.choices[0].message.content or ""
    assert text == "hi there"
    assert await attempts(service) == [("p0", "m", "error", code), ("p1", "m", "ok", None)]


async def test_failure_after_content_ends_the_stream_with_one_error(
    start_service: StartService,
) -> None:
    broken = Reply(events=openai_text("one ", "two ", "three"), drop_at=3)
    async with serving(broken, OK) as (a, b):
        service = await chain(start_service, a.url, b.url)
        body = {"model": "m", "messages": USER, "stream": True}
        async with httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{service.http_port}/v1/chat/completions"
            response = await http.post(url, json=body)
    assert response.status_code == 200
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line[:6] == "data: "]
    assert [e["choices"][0]["delta"]["content"] for e in events[:-1]] == ["one ", "two "]
    assert events[-1]["error"]["code"] == "bad_upstream"  # one error event, no [DONE]
    assert not b.requests  # nothing spliced in from another provider
    assert await attempts(service) == [("p0", "m", "error", "bad_upstream")]
    assert (await last(service)).status == "bad_upstream"


async def test_retry_honours_retry_after(start_service: StartService) -> None:
    async with serving(OK, OK) as (a, b):
        a.script(openai_error(429, "busy", retry_after="0.2"))
        service = await chain(start_service, a.url, b.url, retries=1, retry_base_delay=0.01)
        assert served(await ask(service)) == ("m", "p0")
    assert a.requests[1].at - a.requests[0].at >= 0.2
    assert not b.requests
    assert await attempts(service) == [
        ("p0", "m", "error", "rate_limit_exceeded"),
        ("p0", "m", "ok", None),
    ]


async def test_retry_backs_off_then_serves(start_service: StartService) -> None:
    async with serving(OK, OK) as (a, b):
        a.script(openai_error(503, "blip"))
        service = await chain(start_service, a.url, b.url, retries=1, retry_base_delay=0.01)
        assert served(await ask(service)) == ("m", "p0")
    assert len(a.requests) == 2 and not b.requests


async def test_circuit_breaker_opens_skips_and_probes(start_service: StartService) -> None:
    async with serving(openai_error(503, "down"), OK) as (a, b):
        # The cooldown must outlast three requests on a loaded machine (0.2 s did not).
        service = await chain(
            start_service, a.url, b.url, breaker_min_requests=2, breaker_cooldown=1.0
        )
        assert service.router is not None
        breaker = service.router.breakers["p0"]
        for _ in range(3):
            assert served(await ask(service)) == ("m", "p1")
        assert len(a.requests) == 2  # open after two failures: the third skipped p0
        # the skip is on the record (nothing was sent), then the provider that answered
        assert await attempts(service) == [
            ("p0", "m", "breaker_open", None),
            ("p1", "m", "ok", None),
        ]
        a.default = OK
        await eventually(lambda: breaker.state == "half-open")  # the cooldown is time itself
        assert served(await ask(service)) == ("m", "p0")
        assert breaker.state == "closed"


def two_failing(reply: Reply) -> tuple[Reply, Reply]:
    return reply, reply


STATUSES: dict[str, tuple[tuple[Reply | None, Reply | None], int, str]] = {
    "refused": ((None, None), 503, "provider_unavailable"),
    "timed out": (two_failing(Reply(hold=NEVER)), 504, "upstream_timeout"),
    "garbage": (two_failing(GARBAGE), 502, "bad_upstream"),
    "rate limited": (
        (openai_error(429, "a", retry_after="7"), openai_error(429, "b", retry_after="3")),
        429,
        "rate_limit_exceeded",
    ),
    "mixed": ((openai_error(429, "a", retry_after="7"), GARBAGE), 503, "no_provider"),
}


@pytest.mark.parametrize(("replies", "status", "code"), STATUSES.values(), ids=STATUSES.keys())
async def test_status_when_no_candidate_serves(
    start_service: StartService,
    replies: tuple[Reply | None, Reply | None],
    status: int,
    code: str,
) -> None:
    async with serving(*(r or OK for r in replies)) as ups:
        urls = [u.url if r else nothing_listening() for u, r in zip(ups, replies, strict=True)]
        service = await chain(start_service, *urls, provider={"first_byte_timeout": 0.2})
        error = await refused(service)
    assert (error.status_code, error.code) == (status, code)
    if status == 429:
        assert error.response.headers["retry-after"] == "3"
    assert (await last(service)).http_status == status


async def test_no_provider_left_by_preferences_is_400_naming_why(
    start_service: StartService,
) -> None:
    async with Upstream(OK) as up:
        service = await chain(start_service, up.url)
        error = await refused(service, extra_body={"provider": {"only": ["nobody"]}})
    assert (error.status_code, error.code) == (400, "no_allowed_providers")
    assert param(error) == "provider.only" and "p0 (m) by provider.only" in error.message
    assert not up.requests


async def test_upstream_message_kept_and_key_never_shown(
    start_service: StartService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = openai_error(503, f"overloaded; your key {KEY} is fine")
    async with Upstream(echo) as up:
        service = await chain(start_service, up.url)
        rest = await refused(service)
        request = chat_pb2.CreateChatCompletionRequest(
            model="m",
            messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="x")],
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(request)
    assert up.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was in play
    assert rest.status_code == 503
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info = grpc_error_info(caught.value)
    assert info.metadata["upstream_message"] == "overloaded; your key [redacted] is fine"
    assert info.metadata["provider"] == "p0"
    everywhere = [
        str(caught.value.details()),
        str(caught.value.trailing_metadata()),
        repr(await records(service)),
        caplog.text,
    ]
    assert not [text for text in everywhere if KEY in text]


async def test_client_disconnect_closes_the_upstream_at_once(start_service: StartService) -> None:
    stalls = Reply(events=openai_text("first ", "never"), hold=NEVER, hold_at=2)
    async with Upstream(stalls) as up:
        service = await chain(start_service, up.url)
        body = {"model": "m", "messages": USER, "stream": True}
        url = f"http://127.0.0.1:{service.http_port}/v1/chat/completions"
        async with httpx.AsyncClient() as http, http.stream("POST", url, json=body) as response:
            assert '"first "' in await anext(response.aiter_lines())
        await asyncio.wait_for(up.disconnected.wait(), timeout=5)
        await eventually(lambda: has_records(service, 1))
    record = await last(service)
    assert (record.cancelled, record.status, record.http_status) == (True, "cancelled", 499)
    assert await attempts(service) == [("p0", "m", "cancelled", None)]


async def test_finished_streams_leave_the_connection_for_reuse(
    start_service: StartService,
) -> None:
    async with Upstream(OK) as up:
        service = await chain(start_service, up.url)
        for _ in range(3):
            await ask(service)
    assert (len(up.requests), up.connections) == (3, 1)


async def test_a_body_that_never_ends_after_done_is_cut_off(start_service: StartService) -> None:
    events = [*openai_text("hi ", "there"), b": still here\n\n"]
    async with Upstream(Reply(events=events, hold=NEVER, hold_at=len(events) - 1)) as up:
        service = await chain(start_service, up.url)
        async with sdk(service) as client:
            text = await asyncio.wait_for(streamed_text(client), timeout=5)
        await asyncio.wait_for(up.disconnected.wait(), timeout=5)
    assert text == "hi there"


async def streamed_text(client: openai.AsyncOpenAI) -> str:
    chunks = await client.chat.completions.create(model="m", messages=USER, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in chunks])


# --- streaming fidelity -------------------------------------------------------------------


def call(index: int, **fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **fields}]}


TOOL_STREAM = [
    chunk({"role": "assistant", "content": None}),
    chunk({"reasoning": "let me "}),
    chunk({"reasoning_content": "think"}),
    chunk(call(0, id="call_a", type="function", function={"name": "weather", "arguments": ""})),
    chunk(call(0, id="call_a", function={"arguments": '{"city":'})),  # the id repeated
    chunk(call(1, id="call_b", type="function", function={"name": "time", "arguments": "{}"})),
    chunk(call(0, function={"arguments": '"Paris"}'})),
    chunk({}, "tool_calls"),
    DONE,  # and no usage: tokenwire counts it
]


async def test_tool_call_and_reasoning_deltas_pass_through(start_service: StartService) -> None:
    async with Upstream(Reply(events=TOOL_STREAM)) as up:
        service = await chain(start_service, up.url)
        async with sdk(service) as client:
            stream = await client.chat.completions.create(
                model="m",
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join((d.model_extra or {}).get("reasoning", "") for d in deltas) == "let me think"
    calls = [
        (t.index, t.id, t.function and t.function.name, t.function and t.function.arguments)
        for d in deltas
        for t in d.tool_calls or ()
    ]
    assert calls == [
        (0, "call_a", "weather", ""),
        (0, None, None, '{"city":'),
        (1, "call_b", "time", "{}"),
        (0, None, None, '"Paris"}'),
    ]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and usage.completion_tokens > 0
    assert (usage.model_extra or {}).get("estimated") is True
    assert (await last(service)).estimated


async def test_anthropic_upstream_streams_text_reasoning_and_tools(
    start_service: StartService,
) -> None:
    thinking = {"type": "thinking", "thinking": ""}
    tool = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}
    text = anthropic_text("Sure, ", "checking.", stop="tool_use")
    events = [
        text[0],  # message_start
        anthropic_event("content_block_start", index=0, content_block=thinking),
        anthropic_event(
            "content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "hmm"}
        ),
        *[e.replace(b'"index": 0', b'"index": 1') for e in text[1:5]],  # the text block
        anthropic_event("content_block_start", index=2, content_block=tool),
        anthropic_event(
            "content_block_delta",
            index=2,
            delta={"type": "input_json_delta", "partial_json": '{"city": "Paris"}'},
        ),
        anthropic_event("content_block_stop", index=2),
        *text[-2:],  # message_delta (tool_use), message_stop
    ]
    async with Upstream(Reply(events=events)) as up:
        providers = {"claude": {"kind": "anthropic", "base_url": up.root, "api_key_env": "UP_KEY"}}
        models = [{"id": "sonnet", "provider": "claude", "upstream": "claude-sonnet-4"}]
        service = await tokenwire(start_service, providers, models)
        system = {"role": "system", "content": "be brief"}
        completion = await ask(service, model="sonnet", messages=[system, *USER])
    received = up.requests[0]
    assert (received.path, received.headers["x-api-key"]) == ("/v1/messages", KEY)
    assert received.body["system"] == "be brief" and received.body["model"] == "claude-sonnet-4"
    assert received.body["messages"] == [{"role": "user", "content": [USER_BLOCK]}]
    message = completion.choices[0].message
    assert message.content == "Sure, checking."
    assert (message.model_extra or {}).get("reasoning") == "hmm"
    assert message.tool_calls is not None and message.tool_calls[0].type == "function"
    assert (message.tool_calls[0].id, message.tool_calls[0].function.arguments) == (
        "toolu_1",
        '{"city": "Paris"}',
    )
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 2)
    assert not (await last(service)).estimated


USER_BLOCK = {"type": "text", "text": "hello"}


async def test_anthropic_error_event_falls_back(start_service: StartService) -> None:
    overloaded = {"type": "overloaded_error", "message": "Overloaded"}
    events = [anthropic_text()[0], anthropic_event("error", error=overloaded)]
    async with serving(Reply(events=events), OK) as (claude, gpt):
        providers = {
            "claude": {"kind": "anthropic", "base_url": claude.root},
            "gpt": openai_at(gpt.url),
        }
        models = [{"id": "m", "provider": "claude"}, {"id": "m", "provider": "gpt"}]
        service = await tokenwire(start_service, providers, models)
        assert served(await ask(service)) == ("m", "gpt")
    assert (await attempts(service))[0] == ("claude", "m", "error", "provider_unavailable")


async def test_another_tokenwire_as_the_upstream(
    start_service: StartService, fake: FakeProvider
) -> None:
    inner = await start_service([fake])
    url = f"http://127.0.0.1:{inner.http_port}/v1"
    models = [{"id": "remote", "provider": "tw", "upstream": "fake-echo"}]
    outer = await tokenwire(start_service, {"tw": openai_at(url)}, models)
    async with sdk(outer) as client:
        stream = await client.chat.completions.create(
            model="remote",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three "
    assert {(c.model, (c.model_extra or {})["provider"]) for c in chunks} == {("remote", "tw")}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    inner_record = await last(inner)
    assert (inner_record.model, inner_record.provider) == ("fake-echo", "fake")
    assert not (await last(outer)).estimated  # the inner tokenwire counted


# --- the model registry -------------------------------------------------------------------


async def test_models_list_their_endpoints_and_aliases(start_service: StartService) -> None:
    async with serving(OK, OK) as (a, b):
        providers = {"p0": openai_at(a.url, zdr=True), "p1": openai_at(b.url)}
        models: list[dict[str, Any]] = [
            {"id": "m", "provider": "p0", "aliases": ["fast"], "context_length": 8000,
             "prompt_price": 0.5, "completion_price": 2, "quantization": "fp8"},
            {"id": "m", "provider": "p1", "data_collection": "deny"},
            {"id": "other", "provider": "p1"},
        ]  # fmt: skip
        service = await tokenwire(start_service, providers, models)
        async with sdk(service) as client:
            listed = [m.model_dump() async for m in client.models.list()]
            by_alias = await client.models.retrieve("fast")
            with pytest.raises(openai.NotFoundError) as caught:
                await client.models.retrieve("gpt-nope")
            completion = await client.chat.completions.create(model="fast", messages=USER)
    assert [m["id"] for m in listed] == ["m", "other"]
    m = listed[0]
    assert (m["aliases"], m["context_length"]) == (["fast"], 8000)
    first, second = m["endpoints"]
    assert first == {
        "provider": "p0",
        "context_length": 8000,
        "pricing": {"prompt": 0.5, "completion": 2.0},
        "quantization": "fp8",
        "data_collection": "allow",
        "zdr": True,
    }
    assert (second["provider"], second["data_collection"], second["zdr"]) == ("p1", "deny", False)
    assert (by_alias.model_extra or {})["endpoints"][0]["provider"] == "p0"
    error = caught.value.response.json()["error"]
    assert "gpt-nope" in error["message"] and error["code"] == "model_not_found"
    assert served(completion) == ("m", "p0")


async def test_config_file_serves(start_service: StartService, tmp_path: Path) -> None:
    async with Upstream(OK) as up:
        path = tmp_path / "tokenwire.toml"
        path.write_text(
            f'default_model = "chat"\n\n[providers.up]\nbase_url = "{up.url}"\n'
            'api_key_env = "X_KEY"\nheaders = { "X-Title" = "tokenwire" }\n\n'
            '[[models]]\nid = "chat"\nprovider = "up"\nupstream = "gpt-x"\naliases = ["c"]\n'
        )
        config = load({"config": str(path)}, environ={"X_KEY": "secret"})
        service = await start_service(
            [], upstreams=config.upstreams, default_model=config.default_model
        )
        completion = await ask(service, model="c")
    assert served(completion) == ("chat", "up")
    received = up.requests[0]
    assert received.headers["authorization"] == "Bearer secret"
    assert received.headers["x-title"] == "tokenwire" and received.body["model"] == "gpt-x"
