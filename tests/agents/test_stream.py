"""Streamed agent runs: the answer's tokens as they come, one `agent_step` chunk per tool
call run on the server, every chunk valid against OpenAI's chunk schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.agents.harness import Agents, agent, agents_running
from tests.agents.scripted import call, say
from tests.conftest import StartService, user_turn
from tests.openai_schema import validate

ASK_USER = {
    "type": "function",
    "function": {
        "name": "ask_user",
        "description": "Ask the user a question.",
        "parameters": {"type": "object", "properties": {"question": {"type": "string"}}},
    },
}


@pytest.fixture
async def agents(start_service: StartService) -> Any:
    async with agents_running(start_service) as running:
        await running.create(agent())
        yield running


async def sse(agents: Agents, body: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The response headers and every chunk of a streamed request, each validated."""
    body = {"model": "agent/helper", "stream": True, **body}
    async with agents.rest() as rest, rest.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    return dict(r.headers), chunks


def text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_stream_carries_agent_steps_then_the_answer(agents: Agents) -> None:
    agents.model.queue(call(("calculator", {"expression": "2+3*4"})), say("The answer is 14."))
    body = {"messages": user_turn("2+3*4?"), "stream_options": {"include_usage": True}}
    headers, chunks = await sse(agents, body)
    steps = [c["agent_step"] for c in chunks if "agent_step" in c]
    assert len(steps) == 1 and steps[0]["tool"] == "calculator" and steps[0]["result"] == "14"
    assert json.loads(steps[0]["arguments"]) == {"expression": "2+3*4"}
    assert steps[0]["step"] == 1 and steps[0]["duration_ms"] >= 0
    assert text(chunks) == "The answer is 14."
    assert len({c["id"] for c in chunks}) == 1
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "stop"
    assert finish[0]["agent"]["steps"] == 2 and finish[0]["agent"]["tool_calls"] == 1
    assert finish[0]["agent"]["session_id"] == headers["x-session-id"]
    assert chunks[-1]["usage"]["prompt_tokens"] == 20 and chunks[-1]["choices"] == []
    first_delta = next(c for c in chunks if c["choices"])["choices"][0]["delta"]
    assert first_delta["role"] == "assistant"


async def test_the_sdk_reads_an_agent_stream(agents: Agents) -> None:
    agents.model.queue(call(("calculator", {"expression": "1+1"})), say("two"))
    async with agents.sdk() as client:
        stream = await client.chat.completions.create(
            model="agent/helper", messages=user_turn("1+1"), stream=True
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == "two"


async def test_a_client_tool_call_ends_the_stream_for_the_client(agents: Agents) -> None:
    agents.model.queue(
        call(("calculator", {"expression": "6*7"})),
        call(("ask_user", {"question": "Which unit?"})),
    )
    body = {"messages": user_turn("convert 42"), "tools": [ASK_USER]}
    _, chunks = await sse(agents, body)
    calls = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert len(calls) == 1
    handed = calls[0]["choices"][0]["delta"]["tool_calls"][0]
    assert handed["function"]["name"] == "ask_user" and handed["id"] == "call_2_0"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    names = {t["function"]["name"] for t in agents.model.requests[0].body["tools"]}
    assert names == {"calculator", "current_time", "ask_user"}


async def test_grpc_streams_the_same_steps(agents: Agents) -> None:
    from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2

    agents.model.queue(call(("calculator", {"expression": "3*3"})), say("nine"))
    request = chat_pb2.StreamChatCompletionRequest(
        request=chat_pb2.CreateChatCompletionRequest(
            model="agent/helper",
            messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="3*3")],
        )
    )
    async with agents.channel() as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        chunks = [
            m.chunk
            async for m in stub.StreamChatCompletion(
                request, metadata=(("organization_id", "acme"),)
            )
        ]
    steps = [c.agent_step for c in chunks if c.HasField("agent_step")]
    assert [(s.tool, s.result) for s in steps] == [("calculator", "9")]
    assert "".join(c.choices[0].delta.content for c in chunks if c.choices) == "nine"
    assert chunks[-1].agent.steps == 2
