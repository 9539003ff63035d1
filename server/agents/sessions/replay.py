"""Replay: re-run a recorded session's first run with the model called anew (the
recorded one, or another) and every tool call answered from the recording, so a
replay has no side effects. Each new step says whether the model chose what it
chose the first time: the same tool calls (names and arguments), or the same text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from server.agents import loop
from server.agents.guard import Limits, LoopGuard, canonical
from server.agents.sessions.recorder import Recorder
from server.agents.sessions.store import SessionStore
from server.agents.steps import StepCaller
from server.agents.tools.base import Policy
from server.agents.tools.toolbox import ToolSet
from server.errors import InvalidRequest, ToolFailed
from server.pipeline.chat import ChatPipeline
from server.pipeline.context import CallInfo
from tokenwire.chat.v1 import chat_pb2, message_pb2
from tokenwire.sessions.v1 import sessions_pb2

Step = sessions_pb2.SessionStep
REPLAY_TOOL_TIMEOUT = 5.0


class RecordedTool:
    """A tool answering from the recording: the first unused result of a call with the
    same arguments, else of the same tool."""

    def __init__(self, definition: message_pb2.Tool, recorded: list[Step]) -> None:
        self.definition = definition
        self.name = definition.function.name
        self._left = [s for s in recorded if s.tool == self.name]

    async def run(self, arguments: dict[str, Any]) -> str:
        wanted = canonical(json.dumps(arguments))
        same = [s for s in self._left if canonical(s.arguments) == wanted]
        if not (same or self._left):
            raise ToolFailed(f"the recording holds no further result of {self.name}")
        step = (same or self._left)[0]
        self._left.remove(step)
        if step.HasField("error"):
            raise ToolFailed(step.error)
        return step.result


class Replayer:
    def __init__(self, pipeline: ChatPipeline, store: SessionStore) -> None:
        self._pipeline = pipeline
        self._store = store

    async def replay(
        self, organization: str, session_id: str, model: str | None, call: CallInfo
    ) -> sessions_pb2.Replay:
        session = await self._store.get(organization, session_id)
        head = await self._store.head(organization, session_id)
        first = (
            [s for s in session.steps if s.request_id == session.steps[0].request_id]
            if session.steps
            else []
        )
        recorded = [s for s in first if s.kind == "model" and not s.HasField("error")]
        if not recorded:
            raise InvalidRequest(
                f"Session '{session_id}' has no model call to replay.", param="session"
            )
        run = _run(recorded[0], [s for s in first if s.kind == "tool"], model or head.model, call)
        run.session_id, run.agent = session_id, head.agent
        caller = StepCaller(self._pipeline, f"replay-{call.request_id}", streamed=False)
        async for _ in loop.steps(run, caller):
            pass
        steps = compare(run.recorder.steps, recorded)
        return sessions_pb2.Replay(
            object="session.replay",
            session_id=session_id,
            model=model or head.model,
            steps=steps,
            matched=all(s.matched for s in steps if s.kind == "model"),
            content=run.last.content if run.done else run.best,
        )


def _run(first: Step, tools: list[Step], model: str, call: CallInfo) -> loop.Run:
    toolset = ToolSet()
    for definition in first.tools:
        toolset.add(RecordedTool(definition, tools), Policy(REPLAY_TOOL_TIMEOUT))
    base = chat_pb2.CreateChatCompletionRequest(model=model)
    base.metadata["memory"] = "off"  # the recorded messages hold what was recalled then
    return loop.Run(
        agent="",
        base=base,
        messages=list(first.messages),
        tools=toolset,
        guard=LoopGuard(Limits()),
        recorder=Recorder(call.request_id),
        call=call,
        session_id="",
    )


def compare(new: Sequence[Step], recorded: Sequence[Step]) -> list[Step]:
    """The new steps, each model call marked with whether it chose as recorded."""
    out = []
    for step in new:
        marked = Step()
        marked.CopyFrom(step)
        if step.kind == "model":
            same = recorded[step.step - 1] if step.step <= len(recorded) else None
            marked.matched = same is not None and _choice(same) == _choice(step)
        out.append(marked)
    return out


def _choice(step: Step) -> tuple[Any, ...]:
    if step.tool_calls:
        return tuple((c.function.name, canonical(c.function.arguments)) for c in step.tool_calls)
    return (step.content.strip(),)
