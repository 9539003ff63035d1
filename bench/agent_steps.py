"""What the agent loop adds per step, beyond the model calls and the tools themselves.

In one process: a fake OpenAI-compatible upstream (aiohttp, answering at once: a
`calculator` call until the conversation holds `--steps - 1` tool results, then
text) and tokenwire's `AgentDispatch` in front of the chat pipeline (no
transport: the gateway and gRPC costs are the same as for any request). Each
run of `agent/bench` makes `--steps` model calls and `--steps - 1` tool calls.

    loop per step = (the steps' time - model calls - tool calls) / steps

where the model-call time is measured around each call into the chat pipeline
(so it holds the pipeline's own work, the HTTP call and the upstream) and the
tool time around each tool. What is left is the loop: building each step's
request, reading the answer, the guard, running tools in parallel, recording the
steps in memory. Reported apart, once per run: its start (authenticate, load the
agent from the database, build its tools), and the session's database write
(SQLite in memory here), which happens in the background, off the response's
path. The issue's target: under 1 ms per step.

    .venv/bin/python bench/agent_steps.py [--runs 300] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import uvloop
from aiohttp import web

from server.agents import answer as answer_of
from server.agents import loop
from server.agents.dispatch import AgentDispatch, run_id
from server.agents.sessions.store import SessionStore
from server.agents.steps import StepCaller
from server.agents.store import AgentStore
from server.agents.tools.toolbox import Toolbox, ToolConfig
from server.keys.auth import AdminCredential
from server.memory.store import MemoryStore
from server.pipeline.chat import ChatPipeline
from server.pipeline.context import CallInfo, InProcessSink, OpenAuthenticator
from server.rpc.access import Access
from server.runtime import compose, upstreams
from server.runtime.config import Config
from server.storage.database import open_database
from server.storage.migrations import migrate
from tokenwire.agents.v1 import agents_pb2
from tokenwire.chat.v1 import chat_pb2, message_pb2

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def answer(tool_results: int, steps: int) -> dict[str, Any]:
    if tool_results < steps - 1:
        arguments = json.dumps({"expression": f"6*{tool_results}"})  # not a repeated call
        function = {"name": "calculator", "arguments": arguments}
        call = {"id": f"c{tool_results}", "type": "function", "function": function}
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        message, finish = {"role": "assistant", "content": "42"}, "stop"
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return {"id": "up", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [choice], "usage": USAGE}  # fmt: skip


async def upstream(steps: int) -> tuple[web.AppRunner, int]:
    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        done = sum(1 for m in body["messages"] if m["role"] == "tool")
        return web.json_response(answer(done, steps))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return runner, sock.getsockname()[1]


async def dispatcher(port: int) -> tuple[AgentDispatch, compose.Routing]:
    spec = upstreams.parse({"up": {"base_url": f"http://127.0.0.1:{port}/v1"}},
                           [{"id": "m", "provider": "up"}], {})  # fmt: skip
    config = Config(provider="none", upstreams=spec, retries=0)
    routing = await compose.build_routing(config)
    db = await open_database("sqlite://:memory:")
    await migrate(db, compose.MIGRATIONS)
    agents = AgentStore(db)
    definition = agents_pb2.Agent(name="bench", model="m", instructions="You compute.")
    definition.tools.add(type="calculator")
    definition.limits.max_steps = 50
    await agents.create("bench-org", definition)
    pipeline = ChatPipeline(routing.router, InProcessSink(), ())
    access = Access(OpenAuthenticator(), AdminCredential(None))
    toolbox = Toolbox(ToolConfig(), MemoryStore(db))
    dispatch = AgentDispatch(pipeline, agents, toolbox, SessionStore(db), access)
    return dispatch, routing


@dataclass
class Timing:
    start: float  # ms: authenticate, load the agent, build its tools
    loop: float  # ms: the steps, model and tool calls included
    model: float  # ms: inside the chat pipeline
    tools: float  # ms: inside the tools
    record: float  # ms: the session's database write
    steps: int


async def one_run(dispatch: AgentDispatch, i: int) -> Timing:
    """One agent run, as `AgentDispatch.complete` makes it, timed part by part."""
    request = chat_pb2.CreateChatCompletionRequest(model="agent/bench", session_id=f"s{i}")
    request.messages.add(role=message_pb2.ROLE_USER, content_text="6*7, a few times")
    call = CallInfo(f"req_{i}", {"organization_id": "bench-org"})
    t0 = time.perf_counter()
    started = await dispatch.start(request, call)
    t1 = time.perf_counter()
    caller = StepCaller(dispatch.pipeline, run_id(call), streamed=False)
    async for _ in loop.steps(started.run, caller):
        pass
    answer_of.response(started.run, caller)
    t2 = time.perf_counter()
    dispatch.record(started)
    await dispatch.sessions.settled_all()
    t3 = time.perf_counter()
    steps = started.run.recorder.steps
    model = sum(s.duration_ms for s in steps if s.kind == "model")
    tools = sum(s.duration_ms for s in steps if s.kind == "tool")
    ms = 1000
    return Timing(
        (t1 - t0) * ms, (t2 - t1) * ms, model, tools, (t3 - t2) * ms, started.run.guard.steps
    )


def p50(values: Iterable[float]) -> float:
    return round(statistics.median(values), 4)


async def main(runs: int, steps: int) -> None:
    runner, port = await upstream(steps)
    dispatch, routing = await dispatcher(port)
    for i in range(20):  # warm up: connections, caches
        await one_run(dispatch, -i - 1)
    results = [await one_run(dispatch, i) for i in range(runs)]
    await dispatch.toolbox.aclose()
    for provider in routing.providers:
        await provider.aclose()
    await runner.cleanup()
    assert all(r.steps == steps for r in results)
    per_step = sorted((r.loop - r.model - r.tools) / r.steps for r in results)
    whole = sorted((r.start + r.loop - r.model - r.tools) / r.steps for r in results)
    print(json.dumps({
        "runs": runs,
        "steps_per_run": steps,
        "model_call_ms_p50": p50(r.model / r.steps for r in results),
        "tool_call_ms_p50": p50(r.tools / (r.steps - 1) for r in results),
        "loop_per_step_ms_p50": p50(per_step),
        "loop_per_step_ms_p90": round(per_step[int(len(per_step) * 0.9)], 4),
        "run_start_ms_p50": p50(r.start for r in results),
        "run_record_in_background_ms_p50": p50(r.record for r in results),
        "response_path_but_model_and_tools_per_step_ms_p50": p50(whole),
        "target_ms_per_step": 1.0,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    uvloop.run(main(args.runs, args.steps))
