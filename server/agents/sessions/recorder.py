"""The recorder: each model call and each tool call of one agent run, as `SessionStep`s."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from server.agents.steps import Answer
from tokenwire.chat.v1 import message_pb2
from tokenwire.sessions.v1 import sessions_pb2

Step = sessions_pb2.SessionStep


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What one tool call gave the model."""

    result: str
    duration_ms: float
    error: str | None = None


class Recorder:
    def __init__(self, request_id: str, clock: Callable[[], float] = time.time) -> None:
        self.request_id = request_id
        self.steps: list[Step] = []
        self.started = clock()

    def model(
        self,
        step: int,
        messages: Sequence[message_pb2.ChatMessage],
        tools: Sequence[message_pb2.Tool],
        answer: Answer,
    ) -> Step:
        usage = answer.usage
        recorded = Step(
            kind="model",
            step=step,
            request_id=self.request_id,
            messages=messages,
            tools=tools,
            content=answer.content,
            tool_calls=answer.tool_calls,
            model=answer.model,
            provider=answer.provider,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=usage.cost,
            duration_ms=answer.duration_ms,
        )
        self.steps.append(recorded)
        return recorded

    def tool(self, step: int, call: message_pb2.ToolCall, outcome: ToolOutcome) -> Step:
        recorded = Step(
            kind="tool",
            step=step,
            request_id=self.request_id,
            tool=call.function.name,
            tool_call_id=call.id,
            arguments=call.function.arguments,
            result=outcome.result,
            duration_ms=outcome.duration_ms,
        )
        if outcome.error is not None:
            recorded.error = outcome.error
        self.steps.append(recorded)
        return recorded

    def failed(self, step: int, error: str) -> None:
        """A model call that ended in an error."""
        self.steps.append(Step(kind="model", step=step, request_id=self.request_id, error=error))
