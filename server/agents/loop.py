"""The agent loop: model call ▶ the tool calls it asks for, run here in parallel (each
with its own timeout) ▶ their results appended ▶ the next model call; until the model
answers, asks for a tool the client runs (a client tool, or one needing approval), or
the loop guard stops it. A tool's failure goes back to the model as its result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from opentelemetry.trace import Span, Status, StatusCode

from server.agents.guard import LoopGuard
from server.agents.sessions.recorder import Recorder, ToolOutcome
from server.agents.steps import Answer, Chunk, StepCaller
from server.agents.tools.mcp import McpTool
from server.agents.tools.toolbox import ToolSet
from server.errors import TokenwireError, ToolFailed
from server.observability import content, metrics, tracing
from server.pipeline.context import CallInfo
from tokenwire.chat.v1 import agent_run_pb2, chat_pb2, message_pb2

log = logging.getLogger("tokenwire.agents")

MAX_RESULT = 16_000  # characters of a tool result (or error) the model gets
MAX_NAME = 128  # characters of a tool's or agent's name in a span (the model's string)
SUMMARY = 200  # characters of a result in an `agent_step` chunk


@dataclass
class Run:
    """One agent run: what it started from, and what it has done so far."""

    agent: str
    base: chat_pb2.CreateChatCompletionRequest  # each model call's request, but its messages
    messages: list[message_pb2.ChatMessage]  # the conversation so far
    tools: ToolSet
    guard: LoopGuard
    recorder: Recorder
    call: CallInfo
    session_id: str
    usage: chat_pb2.Usage = field(default_factory=chat_pb2.Usage)
    last: Answer = field(default_factory=Answer)
    best: str = ""  # the latest text the model wrote: the answer when the guard stops it
    handed_back: list[message_pb2.ToolCall] = field(default_factory=list)
    stopped_by: str | None = None
    done: bool = False
    meter: metrics.Recorder | None = None  # where steps and tool calls are counted

    def request(self) -> chat_pb2.CreateChatCompletionRequest:
        request = chat_pb2.CreateChatCompletionRequest()
        request.CopyFrom(self.base)
        request.messages.extend(self.messages)
        request.parameters.tools.extend(self.tools.definitions())
        return request

    def step_call(self, step: int) -> CallInfo:
        """The call as one model call sees it: its own request id (and usage record), and
        with tracing on the run's span as its parent."""
        c = self.call
        metadata = tracing.propagated(c.metadata)
        return CallInfo(f"{c.request_id}-{step}", metadata, c.peer, c.headers)

    def account(self, answer: Answer) -> None:
        u, total = answer.usage, self.usage
        total.prompt_tokens += u.prompt_tokens
        total.completion_tokens += u.completion_tokens
        total.total_tokens += u.prompt_tokens + u.completion_tokens
        if u.cost:
            total.cost = total.cost + u.cost
        self.guard.stepped(u.prompt_tokens + u.completion_tokens, u.cost)
        self.last = answer
        if answer.content:
            self.best = answer.content

    def summary(self) -> agent_run_pb2.AgentRun:
        run = agent_run_pb2.AgentRun(
            name=self.agent,
            steps=self.guard.steps,
            tool_calls=self.guard.tool_calls,
            session_id=self.session_id,
        )
        if self.stopped_by is not None:
            run.stopped_by = self.stopped_by
        return run


async def steps(run: Run, caller: StepCaller) -> AsyncIterator[Chunk]:
    """Run the loop to its end; streamed, yield the answers' text and one `agent_step`
    chunk per tool call run here."""
    while (stop := run.guard.before_step()) is None:
        step, answer, request = run.guard.steps + 1, Answer(), run.request()
        if run.meter is not None:
            run.meter.agent_step()
        sent = list(request.messages)  # before the stages rewrite the request
        try:
            async for chunk in caller.call(request, run.step_call(step), answer):
                yield chunk
        except TokenwireError as e:
            run.recorder.failed(step, e.message)
            raise
        run.account(answer)
        run.recorder.model(step, sent, run.tools.definitions(), answer)
        if not answer.tool_calls:
            run.done = True
            return
        back = [c for c in answer.tool_calls if run.tools.handed_back(c.function.name)]
        if back:  # the others wait: the model asks again once it has the client's results
            run.handed_back = back
            return
        if (stop := run.guard.before_calls(answer.tool_calls)) is not None:
            break
        run.messages.append(assistant(answer))
        async for chunk in _tools(run, step, answer.tool_calls, caller):
            yield chunk
    run.stopped_by = stop


async def _tools(
    run: Run, step: int, calls: list[message_pb2.ToolCall], caller: StepCaller
) -> AsyncIterator[Chunk]:
    outcomes = await asyncio.gather(*(run_tool(run, c) for c in calls))
    for call, outcome in zip(calls, outcomes, strict=True):
        run.messages.append(tool_message(call, outcome))
        run.recorder.tool(step, call, outcome)
        if caller.streamed:
            yield step_chunk(caller, run.last, step, call, outcome)


async def run_tool(run: Run, call: message_pb2.ToolCall) -> ToolOutcome:
    """One tool call's outcome; whatever goes wrong is told to the model, never raised."""
    started = time.monotonic()
    name = call.function.name
    with tracing.span(f"execute_tool {name[:MAX_NAME]}", _tool_attributes(run, call)) as span:
        result, error, outcome = await _execute(run, call)
        if span is not None:
            _traced(span, result, error, outcome)
    if run.meter is not None:
        run.meter.tool_call(tool_kind(run.tools, name), outcome)
    duration = (time.monotonic() - started) * 1000
    if error is not None:
        return ToolOutcome(cut(f"Error: {error}"), duration, cut(error))
    return ToolOutcome(cut(result), duration)


async def _execute(run: Run, call: message_pb2.ToolCall) -> tuple[str, str | None, str]:
    """The tool's result, or the error to tell the model; and the outcome (ok, error,
    timeout)."""
    name = call.function.name
    tool, policy = run.tools.tools.get(name), run.tools.policies.get(name)
    limit = 0.0
    try:
        if tool is None or policy is None:
            raise ToolFailed(f"there is no tool named {name!r}")
        arguments = json.loads(call.function.arguments or "{}")
        if not isinstance(arguments, dict):
            raise ToolFailed("the arguments must be a JSON object")
        limit = max(0.0, min(policy.timeout, run.guard.remaining()))  # the run's budget too
        async with asyncio.timeout(limit):
            return await tool.run(arguments), None, "ok"
    except TimeoutError:
        if policy is not None and limit < policy.timeout:
            run.guard.expired = True  # cut by the run's budget (timers may fire a bit early)
        return "", f"timed out after {limit:.3g} s", "timeout"
    except TokenwireError as e:  # ToolFailed, or a store's refusal (a 400 from the memory)
        return "", e.message, "error"
    except ValueError:
        return "", "the arguments are not valid JSON", "error"
    except Exception:  # a bug in a tool must not end the run: the model is told it failed
        log.exception("tool %s failed", name[:MAX_NAME])
        return "", "the tool failed unexpectedly", "error"


def cut(text: str) -> str:
    """What the model gets of a tool's result or error: at most MAX_RESULT characters."""
    return text[:MAX_RESULT]


def tool_kind(tools: ToolSet, name: str) -> str:
    """A bounded label for a tool: a built-in's own name, `mcp`, or `unknown` (a name the
    agent lacks: the model's string, never a label)."""
    tool = tools.tools.get(name)
    if tool is None:
        return "unknown"
    return "mcp" if isinstance(tool, McpTool) else tool.name


def _tool_attributes(run: Run, call: message_pb2.ToolCall) -> tracing.Attributes:
    attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.function.name[:MAX_NAME],
        "gen_ai.tool.call.id": call.id[:MAX_NAME],
        "tokenwire.tool.kind": tool_kind(run.tools, call.function.name),
    }
    if tracing.capturing_content():
        attributes["gen_ai.tool.call.arguments"] = content.bounded(call.function.arguments)
    return attributes


def _traced(span: Span, result: str, error: str | None, outcome: str) -> None:
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error[:SUMMARY]))
        span.set_attribute("error.type", outcome)
    elif tracing.capturing_content():
        span.set_attribute("gen_ai.tool.call.result", content.bounded(result))


def assistant(answer: Answer) -> message_pb2.ChatMessage:
    message = message_pb2.ChatMessage(role=message_pb2.ROLE_ASSISTANT, tool_calls=answer.tool_calls)
    if answer.content:
        message.content_text = answer.content
    return message


def tool_message(call: message_pb2.ToolCall, outcome: ToolOutcome) -> message_pb2.ChatMessage:
    return message_pb2.ChatMessage(
        role=message_pb2.ROLE_TOOL, tool_call_id=call.id, content_text=outcome.result
    )


def step_chunk(
    caller: StepCaller, last: Answer, step: int, call: message_pb2.ToolCall, outcome: ToolOutcome
) -> Chunk:
    chunk = caller.chunk(last.model, last.provider)
    info = chunk.agent_step
    info.step, info.tool, info.arguments = step, call.function.name, call.function.arguments
    info.result, info.duration_ms = outcome.result[:SUMMARY], outcome.duration_ms
    if outcome.error is not None:
        info.error = outcome.error
    return chunk
