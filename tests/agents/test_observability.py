"""Agents observed: their steps and tool calls in `/metrics` (bounded labels: the tool's kind,
never the agent's or the model's strings), their runs and tools as spans through a real OTLP
receiver (`invoke_agent {name}` over the run's model calls and `execute_tool {name}`), and a
tool's error cut to what the model may get, as its result is."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from server.agents.loop import MAX_RESULT
from server.observability import tracing
from tests.agents.harness import Agents, agent, agents_running
from tests.agents.scripted import call, say
from tests.conftest import StartService, user_turn
from tests.observability.otlp_receiver import attributes, receiving
from tests.observability.scrape import scrape, value

TRACE_ID = os.urandom(16).hex()
CALLER_SPAN = os.urandom(8).hex()
SECRET_NAME = "tenant-secret-agent"


async def ask(agents: Agents, name: str = SECRET_NAME, **headers: str) -> Any:
    async with agents.sdk(**headers) as client:
        return await client.chat.completions.create(
            model=f"agent/{name}", messages=user_turn("what is 2+3?")
        )


def steps_with_tools(agents: Agents) -> None:
    """Three model calls; three tools: one ok, one failing, one the agent lacks."""
    agents.model.queue(
        call(("calculator", {"expression": "2+3"}), ("calculator", {"expression": "1/0"})),
        call(("no_such_tool", {})),
        say("5"),
    )


async def test_agent_steps_and_tool_calls_are_counted(start_service: StartService) -> None:
    async with agents_running(start_service) as agents:
        await agents.create(agent(SECRET_NAME))
        steps_with_tools(agents)
        await ask(agents)
        samples = await scrape(agents.service.http_port)
    assert value(samples, "tokenwire_agent_steps_total") == 3
    tools = "tokenwire_tool_calls_total"
    assert value(samples, tools, kind="calculator", outcome="ok") == 1
    assert value(samples, tools, kind="calculator", outcome="error") == 1
    assert value(samples, tools, kind="unknown", outcome="error") == 1
    assert value(samples, tools) == 3
    labels = {v for s in samples for v in s.labels.values()}
    assert SECRET_NAME not in str(labels) and "no_such_tool" not in labels


async def test_an_agent_run_is_a_span_over_its_model_calls_and_tools(
    start_service: StartService,
) -> None:
    async with (
        receiving() as receiver,
        agents_running(start_service, otlp_endpoint=receiver.url) as agents,
    ):
        await agents.create(agent(SECRET_NAME))
        steps_with_tools(agents)
        await ask(agents, traceparent=f"00-{TRACE_ID}-{CALLER_SPAN}-01")
        await asyncio.to_thread(tracing.flush)
    (run,) = receiver.named(f"invoke_agent {SECRET_NAME}")
    assert run.trace_id.hex() == TRACE_ID and run.parent_span_id.hex() == CALLER_SPAN
    seen = attributes(run)
    assert seen["gen_ai.operation.name"] == "invoke_agent"
    assert seen["gen_ai.agent.name"] == SECRET_NAME
    assert seen["tokenwire.agent.steps"] == 3 and seen["gen_ai.usage.output_tokens"] == 15
    calls = [s for s in receiver.named("chat m") if s.kind == 2]  # the requests' server spans
    assert len(calls) == 3 and all(c.parent_span_id == run.span_id for c in calls)
    tools = [s for s in receiver.spans if s.name.startswith("execute_tool ")]
    names = sorted(s.name for s in tools)
    assert names == ["execute_tool calculator"] * 2 + ["execute_tool no_such_tool"]
    assert all(t.parent_span_id == run.span_id and t.trace_id == run.trace_id for t in tools)
    failed = [t for t in tools if t.status.code == 2]  # STATUS_CODE_ERROR
    assert len(failed) == 2 and all(attributes(t)["error.type"] == "error" for t in failed)
    assert attributes(tools[0])["gen_ai.operation.name"] == "execute_tool"
    # content is off by default: no arguments, results or messages on any span
    assert not any(
        k.startswith(("gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "gen_ai.input"))
        for s in receiver.spans
        for k in attributes(s)
    )


async def test_tool_content_on_spans_when_capture_is_on(start_service: StartService) -> None:
    async with (
        receiving() as receiver,
        agents_running(
            start_service, otlp_endpoint=receiver.url, otlp_capture_content=True
        ) as agents,
    ):
        await agents.create(agent(SECRET_NAME))
        agents.model.queue(call(("calculator", {"expression": "6*7"})), say("42"))
        await ask(agents)
        await asyncio.to_thread(tracing.flush)
    (tool,) = receiver.named("execute_tool calculator")
    seen = attributes(tool)
    assert json.loads(str(seen["gen_ai.tool.call.arguments"])) == {"expression": "6*7"}
    assert seen["gen_ai.tool.call.result"] == "42"


async def test_a_long_tool_error_is_cut_as_a_result_is(start_service: StartService) -> None:
    host = "a" * (MAX_RESULT + 5000)  # refused by name: the error quotes the host
    fetcher = {"type": "http_fetch", "http_fetch": {"allowed_hosts": ["example.org"]}}
    async with agents_running(start_service) as agents:
        await agents.create(agent("web", fetcher))
        agents.model.queue(call(("http_fetch", {"url": f"http://{host}/"})), say("ok"))
        async with agents.sdk() as client:
            stream = await client.chat.completions.create(
                model="agent/web", messages=user_turn("fetch"), stream=True
            )
            steps = [
                c.model_extra["agent_step"]
                async for c in stream
                if c.model_extra and "agent_step" in c.model_extra
            ]
    (result,) = [m["content"] for m in agents.model.sent(1) if m["role"] == "tool"]
    assert result.startswith("Error: refused: aaa") and len(result) == MAX_RESULT
    (step,) = steps
    assert step["error"].startswith("refused: aaa") and len(step["error"]) == MAX_RESULT
