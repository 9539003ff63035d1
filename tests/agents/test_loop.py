"""The agent loop end to end: the official openai SDK (and gRPC) → tokenwire → a scripted
OpenAI-compatible model on 127.0.0.1 that answers with tool calls, then text."""

from __future__ import annotations

import json
from typing import Any

import grpc
import openai
import pytest

from tests.agents.harness import Agents, agent, agents_running
from tests.agents.scripted import call, say
from tests.conftest import StartService, user_turn
from tests.openai_schema import validate
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2


@pytest.fixture
async def agents(start_service: StartService) -> Any:
    async with agents_running(start_service) as running:
        await running.create(agent())
        yield running


async def ask(agents: Agents, text: str = "what is 2+3*4?", **params: Any) -> Any:
    async with agents.sdk() as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="agent/helper", messages=user_turn(text), **params
        )
    validate("CreateChatCompletionResponse", json.loads(raw.text))
    return raw


def tool_results(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "tool"]


async def test_multi_step_loop_runs_tools_on_the_server(agents: Agents) -> None:
    agents.model.queue(
        call(("calculator", {"expression": "2+3*4"})),
        call(("current_time", {"timezone": "UTC"})),
        say("It is 14."),
    )
    raw = await ask(agents)
    completion = raw.parse()
    assert completion.choices[0].message.content == "It is 14."
    assert completion.choices[0].finish_reason == "stop"
    run = completion.model_extra["agent"]
    assert run["name"] == "helper" and run["steps"] == 3 and run["tool_calls"] == 2
    assert "stopped_by" not in run
    assert raw.headers["x-session-id"] == run["session_id"]
    assert completion.usage.prompt_tokens == 30 and completion.usage.completion_tokens == 15
    second, third = agents.model.sent(1), agents.model.sent(2)
    assert second[0] == {"role": "system", "content": "You help."}
    assert tool_results(second) == ["14"]
    assert tool_results(third)[1].endswith("+00:00")
    tools: list[dict[str, Any]] = agents.model.requests[0].body["tools"]
    names = {t["function"]["name"] for t in tools}
    assert names == {"calculator", "current_time"}


async def test_parallel_calls_each_get_their_result(agents: Agents) -> None:
    agents.model.queue(
        call(("calculator", {"expression": "6*7"}), ("calculator", {"expression": "1/0"})),
        say("42, and 1/0 is undefined."),
    )
    completion = (await ask(agents)).parse()
    assert completion.model_extra["agent"]["tool_calls"] == 2
    results = tool_results(agents.model.sent(1))
    assert results[0] == "42" and results[1].startswith("Error: cannot evaluate")
    ids = [m["tool_call_id"] for m in agents.model.sent(1) if m["role"] == "tool"]
    assert ids == ["call_1_0", "call_1_1"]


async def test_max_steps_stops_with_the_best_answer_so_far(agents: Agents) -> None:
    await agents.create(agent("short", limits={"max_steps": 2}))
    agents.model.queue(
        call(("calculator", {"expression": "1+1"})),
        call(("calculator", {"expression": "2+2"})),
    )
    async with agents.sdk() as client:
        completion = await client.chat.completions.create(
            model="agent/short", messages=user_turn("count")
        )
    run = (completion.model_extra or {})["agent"]
    assert run["stopped_by"] == "max_steps" and run["steps"] == 2
    assert len(agents.model.requests) == 2
    assert completion.choices[0].finish_reason == "stop"


async def test_repeated_call_stops_the_loop(agents: Agents) -> None:
    same = call(("calculator", {"expression": "1+1"}))
    agents.model.queue(same, same, same, say("never"))
    completion = (await ask(agents)).parse()
    run = completion.model_extra["agent"]
    assert run["stopped_by"] == "repeated_call"
    assert run["steps"] == 3 and run["tool_calls"] == 2
    assert len(agents.model.requests) == 3


async def test_a_tool_the_agent_lacks_is_an_error_result(agents: Agents) -> None:
    agents.model.queue(call(("http_fetch", {"url": "http://example.com"})), say("ok"))
    await ask(agents)
    assert tool_results(agents.model.sent(1)) == ["Error: there is no tool named 'http_fetch'"]


async def test_unknown_agent_is_404_and_bad_definition_400(agents: Agents) -> None:
    async with agents.sdk() as client:
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(model="agent/nobody", messages=user_turn("hi"))
    assert missing.value.response.json()["error"]["code"] == "agent_not_found"
    async with agents.rest() as rest:
        bad = await rest.post("/v1/agents", json=agent("x", {"type": "shell"}))
        nested = await rest.post("/v1/agents", json={**agent("y"), "model": "agent/helper"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tools[0].type"
    assert nested.status_code == 400 and nested.json()["error"]["param"] == "model"


async def test_grpc_runs_the_same_loop(agents: Agents) -> None:
    agents.model.queue(call(("calculator", {"expression": "3*3"})), say("9"))
    request = chat_pb2.CreateChatCompletionRequest(
        model="agent/helper",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="3*3?")],
    )
    async with agents.channel() as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        call_ = stub.CreateChatCompletion(request, metadata=(("organization_id", "acme"),))
        response = await call_
        trailing = dict(await call_.trailing_metadata() or ())
    assert response.choices[0].message.content == "9"
    assert response.agent.steps == 2 and response.agent.tool_calls == 1
    assert trailing["x-session-id"] == response.agent.session_id


async def test_agent_crud_over_rest_and_grpc(agents: Agents) -> None:
    from tokenwire.agents.v1 import agents_pb2, agents_pb2_grpc

    async with agents.rest() as rest:
        updated = await rest.patch("/v1/agents/helper", json={"description": "v2"})
        listed = await rest.get("/v1/agents")
        other = await rest.get("/v1/agents/helper", headers={"organization_id": "other"})
    assert updated.json()["version"] == 2 and updated.json()["description"] == "v2"
    assert updated.json()["tools"] == [{"type": "calculator"}, {"type": "current_time"}]
    assert [a["name"] for a in listed.json()["data"]] == ["helper"]
    assert other.status_code == 404
    async with agents.channel() as channel:
        stub = agents_pb2_grpc.AgentServiceStub(channel)
        meta = (("organization_id", "acme"),)
        first = await stub.GetAgent(
            agents_pb2.GetAgentRequest(agent="helper", version=1), metadata=meta
        )
        deleted = await stub.DeleteAgent(
            agents_pb2.DeleteAgentRequest(agent="helper"), metadata=meta
        )
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await stub.GetAgent(agents_pb2.GetAgentRequest(agent="helper"), metadata=meta)
    assert first.agent.version == 1 and not first.agent.HasField("description")
    assert deleted.deleted and deleted.id == first.agent.id
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_openapi_documents_agents_and_sessions(agents: Agents) -> None:
    async with agents.rest() as rest:
        paths = (await rest.get("/openapi.json")).json()["paths"]
    assert {"/v1/agents", "/v1/agents/{agent}", "/v1/sessions", "/v1/sessions/{session}"} <= set(
        paths
    )
    assert "post" in paths["/v1/sessions/{session}:replay"]
