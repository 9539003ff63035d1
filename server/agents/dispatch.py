"""`AgentDispatch`: what the chat servicer calls. `model: "agent/<name>"` runs that agent's
loop (each model call inside it through the chat pipeline); any other model goes to the
pipeline as before.

Before the loop: the caller is authenticated (the agent belongs to its
organization), a key limited to named agents may run only those (403), the
agent is loaded (404), its tools are built, and the run gets its session id
(the request's `session_id`, the `x-session-id` header, or a new one), sent
back in the `x-session-id` header and in `agent.session_id`. After it, what it
did is recorded under that session, whatever happened.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncGenerator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from google.protobuf.message import Message
from opentelemetry.trace import Span

from server.agents import answer, loop
from server.agents.guard import Limits, LoopGuard
from server.agents.sessions.recorder import Recorder
from server.agents.sessions.store import SessionHead, SessionStore
from server.agents.steps import StepCaller
from server.agents.store import AgentStore
from server.agents.tools.toolbox import Toolbox
from server.agents.validate import AGENT_PREFIX
from server.errors import InvalidRequest, PermissionDenied
from server.memory.model import Scope
from server.memory.stage import OFF_METADATA_KEY
from server.observability import metrics, tracing
from server.pipeline.chat import ChatPipeline, Prepared, Streamed
from server.pipeline.context import CallInfo, Principal
from server.rpc.access import Access, organization_of
from tokenwire.agents.v1 import agents_pb2
from tokenwire.chat.v1 import chat_pb2, message_pb2

SESSION_HEADER = "x-session-id"
PLAIN_SESSION = re.compile(r"[!-~]{1,128}")


@dataclass(frozen=True, slots=True)
class Started:
    run: loop.Run
    organization: str
    model: str  # the agent's own model, recorded with the session


class AgentDispatch:
    def __init__(
        self,
        pipeline: ChatPipeline,
        agents: AgentStore,
        toolbox: Toolbox,
        sessions: SessionStore,
        access: Access,
        meter: metrics.Recorder | None = None,
    ) -> None:
        self.pipeline = pipeline
        self._agents = agents
        self.toolbox = toolbox
        self.sessions = sessions
        self._access = access
        self._meter = meter  # agents' steps and tool calls are counted here (None: off)

    async def complete(
        self, request: chat_pb2.CreateChatCompletionRequest, call: CallInfo
    ) -> chat_pb2.CreateChatCompletionResponse:
        if not request.model.startswith(AGENT_PREFIX):
            return await self.pipeline.complete(request, call)
        with agent_span(request, call) as span:
            started = await self.start(request, call)
            caller = StepCaller(self.pipeline, run_id(call), streamed=False)
            try:
                async for _ in loop.steps(started.run, caller):
                    pass
                return answer.response(started.run, caller)
            finally:
                self.record(started, span)

    def stream(
        self,
        request: chat_pb2.CreateChatCompletionRequest,
        call: CallInfo,
        prepared: Prepared | None = None,
    ) -> AsyncGenerator[chat_pb2.StreamChatCompletionResponse, None]:
        if not request.model.startswith(AGENT_PREFIX):
            return self.pipeline.stream(request, call, prepared)
        return self._stream(request, call, prepared)

    async def _stream(
        self,
        request: chat_pb2.CreateChatCompletionRequest,
        call: CallInfo,
        prepared: Prepared | None,
    ) -> AsyncGenerator[chat_pb2.StreamChatCompletionResponse, None]:
        with agent_span(request, call) as span:
            started = await self.start(request, call)
            caller = StepCaller(self.pipeline, run_id(call), streamed=True, prepared=prepared)
            try:
                async for chunk in loop.steps(started.run, caller):
                    yield Streamed(chunk=chunk)
                include_usage = request.stream_options.include_usage
                for chunk in answer.last_chunks(started.run, caller, include_usage):
                    yield Streamed(chunk=chunk)
            finally:
                self.record(started, span)

    async def start(self, request: chat_pb2.CreateChatCompletionRequest, call: CallInfo) -> Started:
        principal = await self._access.principal(call)
        organization = organization_of(principal)
        name = request.model.removeprefix(AGENT_PREFIX)
        allowed(principal, name)
        agent = await self._agents.get(organization, name)
        if request.HasField("n") and request.n != 1:
            raise InvalidRequest("An agent answers with one choice: 'n' must be 1.", param="n")
        session_id = session_of(request, call)
        call.headers[SESSION_HEADER] = session_id
        limits = Limits.of(agent.limits)
        user = request.user if request.HasField("user") and request.user else None
        tools = await self.toolbox.for_run(
            agent, Scope(organization, user, session_id), limits, request.parameters.tools
        )
        run = loop.Run(
            agent=agent.name,
            base=step_base(agent, request, session_id),
            messages=first_messages(agent, request),
            tools=tools,
            guard=LoopGuard(limits),
            recorder=Recorder(call.request_id),
            call=call,
            session_id=session_id,
            meter=self._meter,
        )
        return Started(run, organization, agent.model)

    def record(self, started: Started, span: Span | None = None) -> None:
        """Keep the run's steps, written in the background (see `SessionStore`); tell the
        run's span (when tracing) what it did."""
        run = started.run
        if span is not None:
            span.set_attributes(run_attributes(run))
        head = SessionHead(run.session_id, run.agent, started.model, run.recorder.started)
        self.sessions.record(started.organization, head, run.recorder.steps)


def agent_span(
    request: chat_pb2.CreateChatCompletionRequest, call: CallInfo
) -> AbstractContextManager[Span | None]:
    """The run's span, `invoke_agent {name}`, continuing the caller's traceparent: the
    parent of its model calls and tools."""
    name = request.model.removeprefix(AGENT_PREFIX)[: loop.MAX_NAME]
    attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name}
    return tracing.continued(f"invoke_agent {name}", call.metadata, attributes)


def run_attributes(run: loop.Run) -> tracing.Attributes:
    attributes: dict[str, str | int | float | bool] = {
        "gen_ai.conversation.id": run.session_id,
        "gen_ai.usage.input_tokens": run.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": run.usage.completion_tokens,
        "tokenwire.agent.steps": run.guard.steps,
        "tokenwire.agent.tool_calls": run.guard.tool_calls,
    }
    if run.stopped_by is not None:
        attributes["tokenwire.agent.stopped_by"] = run.stopped_by
    return attributes


def allowed(principal: Principal, name: str) -> None:
    if principal.allowed_agents is not None and name not in principal.allowed_agents:
        raise PermissionDenied(
            f"This API key may not run the agent '{name}'.",
            param="model",
            code="agent_not_allowed",
        )


def run_id(call: CallInfo) -> str:
    return f"chatcmpl-{call.request_id.removeprefix('req_')}"


def session_of(request: chat_pb2.CreateChatCompletionRequest, call: CallInfo) -> str:
    """The run's session id: it goes back in a header, so it must be plain ASCII."""
    if request.HasField("session_id") and request.session_id:
        session = request.session_id
    else:
        session = call.metadata.get(SESSION_HEADER) or f"sess_{os.urandom(12).hex()}"
    if not PLAIN_SESSION.fullmatch(session):
        raise InvalidRequest(
            "An agent run's 'session_id' is 1 to 128 printable ASCII characters without"
            " spaces (it is sent back in the x-session-id header).",
            param="session_id",
        )
    return session


def step_base(
    agent: agents_pb2.Agent, request: chat_pb2.CreateChatCompletionRequest, session_id: str
) -> chat_pb2.CreateChatCompletionRequest:
    """What every model call of the run asks, but its messages and the agent's tools: the
    client's parameters with the agent's model, routing, template and memory settings."""
    base = chat_pb2.CreateChatCompletionRequest()
    base.CopyFrom(request)
    cleared: Message = base
    for name in ("messages", "stream", "stream_options", "n", "template", "variables"):
        cleared.ClearField(name)
    base.model, base.session_id = agent.model, session_id
    if agent.models:
        del base.parameters.models[:]
        base.parameters.models.extend(agent.models)
    if agent.HasField("provider"):
        base.parameters.provider.CopyFrom(agent.provider)
    if agent.HasField("template"):
        base.template = agent.template
        base.variables.update(agent.variables)
        base.variables.update(request.variables)
    if agent.memory.HasField("recall") and not agent.memory.recall:
        base.metadata[OFF_METADATA_KEY] = "off"
    return base


def first_messages(
    agent: agents_pb2.Agent, request: chat_pb2.CreateChatCompletionRequest
) -> list[message_pb2.ChatMessage]:
    """The agent's instructions, then the client's messages."""
    messages = list(request.messages)
    if agent.HasField("instructions") and agent.instructions:
        system = message_pb2.ChatMessage(
            role=message_pb2.ROLE_SYSTEM, content_text=agent.instructions
        )
        messages.insert(0, system)
    return messages
