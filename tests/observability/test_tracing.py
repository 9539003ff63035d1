"""Traces through a real OTLP/HTTP receiver: the request's span continues the caller's
traceparent, each try of a provider is its child, and the upstream gets the trace."""

from __future__ import annotations

import asyncio
import os

import grpc
import httpx

from server.observability import tracing
from server.providers.fake import FakeProvider
from server.runtime import upstreams
from tests.conftest import StartService
from tests.observability.otlp_receiver import attributes, receiving
from tests.routing.upstream_server import Reply, openai_error, openai_text
from tests.routing.upstream_server import upstreams as serving
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2

TRACE_ID = os.urandom(16).hex()
CALLER_SPAN = os.urandom(8).hex()
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
SERVER, CLIENT = 2, 3  # the OTLP protobuf's SpanKind values


async def test_request_span_continues_the_caller_and_reaches_the_upstream(
    start_service: StartService,
) -> None:
    ok = Reply(events=openai_text("hi ", "there"))
    async with receiving() as receiver, serving(ok) as (up,):
        up.replies.append(openai_error(503, "busy"))  # the first try fails, the retry answers
        config = upstreams.parse(
            {"p": {"base_url": up.url, "api_key_env": "K"}},
            [{"id": "m", "provider": "p", "upstream": "up-model"}],
            {"K": "sk-secret"},
        )
        service = await start_service(
            [], upstreams=config, otlp_endpoint=receiver.url, retries=1, retry_base_delay=0.0
        )
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"http://127.0.0.1:{service.http_port}/v1/chat/completions",
                json=BODY,
                headers={"traceparent": TRACEPARENT},
            )
        assert answer.status_code == 200, answer.text
        await asyncio.to_thread(tracing.flush)  # blocks until the receiver has answered
    (request,) = receiver.named("chat m")
    assert request.trace_id.hex() == TRACE_ID and request.parent_span_id.hex() == CALLER_SPAN
    assert request.kind == SERVER
    seen = attributes(request)
    assert seen["gen_ai.operation.name"] == "chat" and seen["gen_ai.request.model"] == "m"
    assert seen["gen_ai.provider.name"] == "p" and seen["gen_ai.response.model"] == "m"
    assert seen["gen_ai.usage.output_tokens"] == 2
    tries = receiver.named("chat up-model")
    assert [attributes(t)["tokenwire.attempt"] for t in tries] == [0, 1]
    assert all(t.parent_span_id == request.span_id and t.kind == CLIENT for t in tries)
    assert tries[0].status.code == 2 and tries[1].status.code != 2  # the 503, then the answer
    # each try sent the upstream its own span as the parent
    sent = [r.headers["traceparent"] for r in up.requests]
    assert sent == [f"00-{TRACE_ID}-{t.span_id.hex()}-01" for t in tries]
    stages = {s.name for s in receiver.spans if s.parent_span_id == request.span_id}
    assert stages == {"template expand", "memory recall", "chat up-model"}


async def test_a_request_without_traceparent_starts_a_trace(start_service: StartService) -> None:
    async with receiving() as receiver:
        service = await start_service([FakeProvider()], otlp_endpoint=receiver.url)
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"http://127.0.0.1:{service.http_port}/v1/chat/completions",
                json={**BODY, "model": "fake-echo"},
            )
        assert answer.status_code == 200
        await asyncio.to_thread(tracing.flush)
    request, attempt = sorted(receiver.named("chat fake-echo"), key=lambda s: s.kind)
    assert request.kind == SERVER and attempt.kind == CLIENT
    assert not request.parent_span_id and len(request.trace_id) == 16
    assert attempt.trace_id == request.trace_id and attempt.parent_span_id == request.span_id


async def test_tracing_off_sends_the_upstream_no_traceparent(
    start_service: StartService,
) -> None:
    async with serving(Reply(events=openai_text("hi"))) as (up,):
        config = upstreams.parse(
            {"p": {"base_url": up.url, "api_key_env": "K"}},
            [{"id": "m", "provider": "p"}],
            {"K": "sk-secret"},
        )
        service = await start_service([], upstreams=config)
        assert not tracing.enabled()
        async with httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{service.http_port}/v1/chat/completions"
            answer = await client.post(url, json=BODY, headers={"traceparent": TRACEPARENT})
        assert answer.status_code == 200
    assert "traceparent" not in up.requests[0].headers


async def test_body_trace_fields_as_openrouter_reads_them(start_service: StartService) -> None:
    trace = {
        "trace_id": TRACE_ID,
        "parent_span_id": CALLER_SPAN,
        "span_name": "summarize",
        "trace_name": "nightly",
        "generation_name": "draft",
    }
    async with receiving() as receiver:
        service = await start_service([FakeProvider()], otlp_endpoint=receiver.url)
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"http://127.0.0.1:{service.http_port}/v1/chat/completions",
                json={**BODY, "model": "fake-echo", "trace": trace},
            )
        assert answer.status_code == 200, answer.text
        await asyncio.to_thread(tracing.flush)
    (request,) = receiver.named("summarize")
    assert request.trace_id.hex() == TRACE_ID and request.parent_span_id.hex() == CALLER_SPAN
    seen = attributes(request)
    assert seen["tokenwire.trace_name"] == "nightly"
    assert seen["tokenwire.generation_name"] == "draft"


async def test_grpc_metadata_traceparent_is_continued(start_service: StartService) -> None:
    request = chat_pb2.CreateChatCompletionRequest(
        model="fake-echo",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="hi")],
    )
    async with receiving() as receiver:
        service = await start_service([FakeProvider()], otlp_endpoint=receiver.url)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            await stub.CreateChatCompletion(request, metadata=(("traceparent", TRACEPARENT),))
        await asyncio.to_thread(tracing.flush)
    (request_span,) = [s for s in receiver.named("chat fake-echo") if s.kind == SERVER]
    assert request_span.trace_id.hex() == TRACE_ID
    assert request_span.parent_span_id.hex() == CALLER_SPAN
