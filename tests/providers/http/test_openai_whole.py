"""The OpenAI-compatible provider on a unary call: one request, the whole answer at once.

A caller that does not stream gets its answer from a `"stream": false`
upstream call; the answer's choices come back as the same `Delta`s a stream
would give, so the pipeline assembles both alike.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
from typing import Any

import httpx
import pytest

from server.errors import (
    BadUpstream,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from server.providers.base import (
    Delta,
    FinishReason,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
    Usage,
)
from server.providers.http import exchange
from tests.providers.http.mock_upstream import Recorder
from tests.providers.http.test_openai import (
    FULL_REQUEST,
    HELLO,
    KEY,
    STREAM_HEAD,
    assert_no_key,
    collect,
    failure,
    provider_for,
    real_provider,
)

UNARY = dataclasses.replace(HELLO, streamed=False)


def answer(*choices: dict[str, Any], **extra: Any) -> httpx.Response:
    body = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m"}
    return httpx.Response(200, json={**body, "choices": list(choices), **extra})


def choice(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    return {"index": extra.pop("index", 0), "message": message, "finish_reason": finish, **extra}


USAGE = {
    "prompt_tokens": 9,
    "completion_tokens": 4,
    "prompt_tokens_details": {"cached_tokens": 2},
    "completion_tokens_details": {"reasoning_tokens": 1},
}


async def test_a_unary_call_asks_for_the_whole_answer() -> None:
    recorder = Recorder(answer(choice({"role": "assistant", "content": "ok"}), usage=USAGE))
    await collect(provider_for(recorder), dataclasses.replace(FULL_REQUEST, streamed=False))
    sent = recorder.sent()
    assert sent["stream"] is False
    assert "stream_options" not in sent
    assert (sent["n"], sent["top_logprobs"], sent["seed"]) == (2, 3, 7)  # the rest as streamed
    assert recorder.requests[-1].headers["accept"] == "application/json"
    assert recorder.requests[-1].headers["accept-encoding"] == "identity"


async def test_each_choice_of_the_answer_is_one_delta_then_the_usage() -> None:
    logprobs = {
        "content": [
            {"token": "ok", "logprob": -0.5, "bytes": [111, 107], "top_logprobs": [
                {"token": "ok", "logprob": -0.5, "bytes": [111, 107]},
            ]},
        ]
    }  # fmt: skip
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    response = answer(
        choice({"role": "assistant", "content": "ok", "reasoning": "hm"}, logprobs=logprobs),
        choice({"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls", index=1),
        usage=USAGE,
    )
    events = await collect(provider_for(Recorder(response)), UNARY)
    top = TopLogprob(token="ok", logprob=-0.5, bytes=(111, 107))
    assert events == [
        Delta(
            content="ok",
            reasoning="hm",
            logprobs=(TokenLogprob(token="ok", logprob=-0.5, bytes=(111, 107), top=(top,)),),
            finish_reason=FinishReason.STOP,
        ),
        Delta(
            tool_calls=(
                ToolCallDelta(index=0, id="call_a", name="f", arguments='{"x":1}'),
                ToolCallDelta(index=1, id="call_b", name="g", arguments="{}"),
            ),
            finish_reason=FinishReason.TOOL_CALLS,
            choice=1,
        ),
        Usage(prompt_tokens=9, completion_tokens=4, cached_tokens=2, reasoning_tokens=1),
    ]


async def test_an_answer_without_usage_is_counted_here() -> None:
    response = answer(choice({"role": "assistant", "content": "x" * 40}))
    *_, usage = await collect(provider_for(Recorder(response)), UNARY)
    assert usage == Usage(prompt_tokens=2, completion_tokens=10, estimated=True)


async def test_an_error_object_answered_with_200_is_typed() -> None:
    response = httpx.Response(200, json={"error": {"message": "slow down", "code": 429}})
    error = await failure(provider_for(Recorder(response)), UNARY)
    assert type(error) is RateLimited
    assert error.metadata["upstream_message"] == "slow down"


async def test_an_error_status_is_typed_and_keeps_the_key_out() -> None:
    response = httpx.Response(503, json={"error": {"message": f"overloaded, {KEY}"}})
    error = await failure(provider_for(Recorder(response)), UNARY)
    assert type(error) is UpstreamUnavailable
    assert error.http_status == 503
    assert_no_key(error)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=f"not json {KEY}".encode()),
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(200, json={"id": "no choices"}),
        answer({"index": 0, "message": {"content": 5}, "finish_reason": "stop"}),
    ],
    ids=["not JSON", "not an object", "no choices", "wrong types"],
)
async def test_a_garbled_answer_is_bad_upstream(response: httpx.Response) -> None:
    error = await failure(provider_for(Recorder(response)), UNARY)
    assert type(error) is BadUpstream
    assert error.http_status == 502
    assert_no_key(error)


async def test_an_answer_beyond_the_size_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exchange, "MAX_BODY", 1000)
    response = answer(choice({"role": "assistant", "content": "x" * 2000}))
    error = await failure(provider_for(Recorder(response)), UNARY)
    assert type(error) is BadUpstream
    assert "larger than" in error.message


async def test_the_first_byte_timeout_bounds_a_unary_generation() -> None:
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()  # never answers: the provider's limit ends this

    async with real_provider(behaviour, first_byte_timeout=0.2, total_timeout=5) as provider:
        error = await failure(provider, UNARY)
    assert isinstance(error, UpstreamTimeout)
    assert error.message == "openai sent nothing within 0.2 s"


async def test_a_body_cut_short_is_bad_upstream() -> None:
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
        writer.write(b'content-length: 100\r\n\r\n{"choices": [')
        await writer.drain()  # and the connection closes with 87 bytes missing

    async with real_provider(behaviour) as provider:
        error = await failure(provider, UNARY)
    assert type(error) is BadUpstream
    assert error.metadata["cause"] == "ClientPayloadError"


async def test_a_caller_leaving_a_unary_call_disconnects_the_upstream() -> None:
    arrived, disconnected = asyncio.Event(), asyncio.Event()

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        arrived.set()
        await reader.read()  # returns only when the client closes its end
        disconnected.set()

    async with real_provider(behaviour) as provider:
        call = asyncio.ensure_future(collect(provider, UNARY))
        await asyncio.wait_for(arrived.wait(), timeout=5)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        # The provider and its session stay open: only the cancel can have closed it.
        await asyncio.wait_for(disconnected.wait(), timeout=5)


async def test_a_stream_answered_to_a_unary_call_is_bad_upstream() -> None:
    """A server ignoring `"stream": false` is refused plainly, not misread."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + b"0\r\n\r\n")
        await writer.drain()

    async with real_provider(behaviour) as provider:
        error = await failure(provider, UNARY)
    assert type(error) is BadUpstream


async def test_a_compressed_answer_is_refused_plainly() -> None:
    """Bodies are read as sent: a server compressing one it was asked not to is 502."""
    body = gzip.compress(b'{"choices": []}')

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
        writer.write(b"content-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()

    async with real_provider(behaviour) as provider:
        error = await failure(provider, UNARY)
    assert type(error) is BadUpstream
    assert error.message == "openai sent a compressed response, though asked for none"
