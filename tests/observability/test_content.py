"""Prompt and completion text on spans only when `otlp_capture_content` is on, as the GenAI
conventions' `gen_ai.input.messages` / `gen_ai.output.messages`, bounded in size."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from server.observability import tracing
from server.observability.content import CUT, INPUT, MAX_CHARS, OUTPUT
from server.providers.base import Delta, FinishReason, ToolCallDelta, Usage
from server.providers.fake import FakeConfig, FakeProvider
from tests.conftest import StartService
from tests.observability.otlp_receiver import Receiver, attributes, receiving

SCRIPT = (
    Delta(content="fine, "),
    Delta(content="thanks"),
    Delta(finish_reason=FinishReason.STOP),
    Usage(4, 2),
)
SERVER = 2  # the OTLP protobuf's SpanKind SERVER: the request's span


CALLING = (
    Delta(content="Looking."),
    Delta(tool_calls=(ToolCallDelta(0, id="call_1", name="weather", arguments='{"city"'),)),
    Delta(tool_calls=(ToolCallDelta(0, arguments=': "Oslo"}'),)),
    Delta(finish_reason=FinishReason.TOOL_CALLS),
    Usage(4, 9),
)


async def traced(
    start: StartService,
    *bodies: dict[str, Any],
    script: tuple[Delta | Usage, ...] = SCRIPT,
    **settings: Any,
) -> Receiver:
    """The spans of `bodies` posted to a tokenwire tracing to a real OTLP receiver."""
    async with receiving() as receiver:
        provider = FakeProvider(FakeConfig(script=script))
        service = await start([provider], otlp_endpoint=receiver.url, **settings)
        async with httpx.AsyncClient(timeout=30) as client:
            for body in bodies:
                url = f"http://127.0.0.1:{service.http_port}/v1/chat/completions"
                answer = await client.post(url, json={"model": "fake-echo", **body})
                assert answer.status_code == 200, answer.text
        await asyncio.to_thread(tracing.flush)
    return receiver


def requests(receiver: Receiver) -> list[dict[str, object]]:
    return [attributes(s) for s in receiver.named("chat fake-echo") if s.kind == SERVER]


MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "How are you?"},
]


async def test_no_content_on_spans_unless_asked(start_service: StartService) -> None:
    receiver = await traced(start_service, {"messages": MESSAGES})
    (seen,) = requests(receiver)
    assert seen["gen_ai.request.model"] == "fake-echo"  # traced, but no text
    assert not any(k in attributes(s) for s in receiver.spans for k in (INPUT, OUTPUT))
    assert not any("How are you" in str(attributes(s)) for s in receiver.spans)


async def test_prompt_and_completion_on_the_request_span_when_asked(
    start_service: StartService,
) -> None:
    bodies = ({"messages": MESSAGES}, {"messages": MESSAGES, "stream": True})
    receiver = await traced(start_service, *bodies, otlp_capture_content=True)
    for seen in requests(receiver):  # unary, and streamed
        assert json.loads(str(seen[INPUT])) == [
            {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
            {"role": "user", "parts": [{"type": "text", "content": "How are you?"}]},
        ]
        assert json.loads(str(seen[OUTPUT])) == [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": "fine, thanks"}],
                "finish_reason": "stop",
            }
        ]
    assert len(requests(receiver)) == 2


async def test_tool_calls_are_in_the_captured_answer_streamed_or_not(
    start_service: StartService,
) -> None:
    bodies = ({"messages": MESSAGES}, {"messages": MESSAGES, "stream": True})
    receiver = await traced(start_service, *bodies, script=CALLING, otlp_capture_content=True)
    for seen in requests(receiver):  # unary, and streamed: the call's deltas put together
        (answer,) = json.loads(str(seen[OUTPUT]))
        assert answer["finish_reason"] == "tool_calls"
        text, call = answer["parts"]
        assert text == {"type": "text", "content": "Looking."}
        assert call["id"] == "call_1" and call["name"] == "weather"
        assert call["arguments"] in ('{"city": "Oslo"}', {"city": "Oslo"})
    assert len(requests(receiver)) == 2


async def test_captured_content_is_bounded(start_service: StartService) -> None:
    long = [{"role": "user", "content": "x" * (MAX_CHARS * 3)}, {"role": "user", "content": "y"}]
    receiver = await traced(start_service, {"messages": long}, otlp_capture_content=True)
    (seen,) = requests(receiver)
    parts = [m["parts"] for m in json.loads(str(seen[INPUT]))]
    assert parts[0][0]["content"] == "x" * MAX_CHARS + CUT
    assert parts[1][0]["content"] == CUT  # nothing left for the second: it is marked cut
    assert len(str(seen[INPUT])) < MAX_CHARS + 200
