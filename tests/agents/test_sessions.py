"""Session replay: every agent run recorded step by step under its session id, read back
over REST and gRPC, replayed from the recording (no side effects), with another model."""

from __future__ import annotations

import json
from typing import Any

import grpc
import openai
import pytest

from tests.agents.harness import Agents, agent, agents_running
from tests.agents.scripted import call, say
from tests.conftest import StartService, user_turn
from tokenwire.sessions.v1 import sessions_pb2, sessions_pb2_grpc

REMEMBER = {"type": "memory_store"}


@pytest.fixture
async def agents(start_service: StartService) -> Any:
    async with agents_running(start_service) as running:
        await running.create(agent("helper", {"type": "calculator"}, REMEMBER))
        yield running


async def run(agents: Agents, session: str) -> Any:
    agents.model.queue(
        call(("calculator", {"expression": "2+3*4"}), ("memory_store", {"content": "x is 14"})),
        say("It is 14."),
    )
    async with agents.sdk() as client:
        return await client.chat.completions.create(
            model="agent/helper", messages=user_turn("2+3*4?"), extra_body={"session_id": session}
        )


async def memories(agents: Agents) -> int:
    async with agents.rest() as rest:
        return len((await rest.get("/v1/memories")).json()["data"])


async def test_a_run_is_recorded_step_by_step(agents: Agents) -> None:
    completion = await run(agents, "s-1")
    assert completion.model_extra["agent"]["session_id"] == "s-1"
    async with agents.rest() as rest:
        session = (await rest.get("/v1/sessions/s-1")).json()
        listed = (await rest.get("/v1/sessions")).json()
    assert session["agent"] == "helper" and [s["id"] for s in listed["data"]] == ["s-1"]
    kinds = [(s["kind"], s["step"], s.get("tool")) for s in session["steps"]]
    assert kinds == [
        ("model", 1, None),
        ("tool", 1, "calculator"),
        ("tool", 1, "memory_store"),
        ("model", 2, None),
    ]
    first, calc, _, last = session["steps"]
    assert first["messages"][0] == {"role": "system", "content": "You help."}
    assert first["tool_calls"][0]["function"]["name"] == "calculator"
    assert first["model"] == "m" and first["provider"] == "p0"
    assert first["prompt_tokens"] == 10 and first["completion_tokens"] == 5
    assert calc["result"] == "14" and json.loads(calc["arguments"]) == {"expression": "2+3*4"}
    assert last["content"] == "It is 14." and "error" not in calc


async def test_sessions_are_the_organizations_own(agents: Agents) -> None:
    await run(agents, "s-1")
    async with agents.rest("other") as rest:
        missing = await rest.get("/v1/sessions/s-1")
        listed = (await rest.get("/v1/sessions")).json()
        replay = await rest.post("/v1/sessions/s-1:replay", json={})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "session_not_found"
    assert listed["data"] == [] and replay.status_code == 404


async def test_replay_serves_recorded_tool_results_and_matches(agents: Agents) -> None:
    await run(agents, "s-1")
    stored = await memories(agents)
    agents.model.queue(
        call(("calculator", {"expression": "2+3*4"}), ("memory_store", {"content": "x is 14"})),
        say("It is 14."),
    )
    async with agents.rest() as rest:
        replay = (await rest.post("/v1/sessions/s-1:replay", json={})).json()
    assert replay["object"] == "session.replay" and replay["matched"] is True
    assert replay["content"] == "It is 14." and replay["model"] == "m"
    assert [s.get("matched") for s in replay["steps"]] == [True, None, None, True]
    assert await memories(agents) == stored  # memory_store answered from the recording
    results = [m["content"] for m in agents.model.sent(-1) if m["role"] == "tool"]
    assert results[0] == "14" and results[1].startswith("Stored as memory")


async def test_replay_with_another_model_reports_differences_over_grpc(agents: Agents) -> None:
    await run(agents, "s-1")
    agents.model.queue(call(("calculator", {"expression": "2+3*4"})), say("Fourteen."))
    request = sessions_pb2.ReplaySessionRequest(session="s-1", model="m2")
    async with agents.channel() as channel:
        stub = sessions_pb2_grpc.SessionServiceStub(channel)
        meta = (("organization_id", "acme"),)
        replay = (await stub.ReplaySession(request, metadata=meta)).replay
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetSession(sessions_pb2.GetSessionRequest(session="nope"), metadata=meta)
    assert agents.model.requests[-1].body["model"] == "up-m2"
    model_steps = [s for s in replay.steps if s.kind == "model"]
    assert [s.matched for s in model_steps] == [False, False]  # one call fewer, other words
    assert not replay.matched and replay.content == "Fourteen."
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_session_id_that_cannot_be_a_header_is_400(agents: Agents) -> None:
    async with agents.sdk() as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="agent/helper", messages=user_turn("hi"), extra_body={"session_id": "é t"}
            )
    assert refused.value.response.json()["error"]["param"] == "session_id"
    assert agents.model.requests == []
