"""What an agent run may do: keys limited to named agents (403), tools needing approval
and client tools handed back to the client (and the loop continued after), budgets."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.agents.harness import Agents, agent, agents_running
from tests.agents.scripted import call, say
from tests.agents.test_stream import ASK_USER
from tests.conftest import StartService, user_turn

ADMIN = "admin-token-0123456789"


async def chat(client: openai.AsyncOpenAI, **params: Any) -> Any:
    """A completion, untyped: the tests read tokenwire's extra fields (`agent`)."""
    return await client.chat.completions.create(**params)


@pytest.fixture
async def agents(start_service: StartService) -> Any:
    async with agents_running(start_service) as running:
        await running.create(agent())
        yield running


async def test_a_key_limited_to_named_agents_gets_403_for_others(
    start_service: StartService,
) -> None:
    async with agents_running(start_service, admin_token=ADMIN) as agents:
        await agents.create(agent("helper"))
        await agents.create(agent("other"))
        async with httpx.AsyncClient(base_url=agents.base) as rest:
            made = await rest.post(
                "/v1/admin/keys",
                headers={"Authorization": f"Bearer {ADMIN}"},
                json={"organization_id": "acme", "create_organization": True,
                      "allowed_agents": ["helper"]},
            )  # fmt: skip
        assert made.status_code == 200, made.text
        assert made.json()["key"]["allowed_agents"] == ["helper"]
        secret = made.json()["secret"]
        agents.model.queue(say("hi"))
        async with openai.AsyncOpenAI(
            base_url=f"{agents.base}/v1", api_key=secret, max_retries=0
        ) as client:
            ok = await chat(client, model="agent/helper", messages=user_turn("x"))
            with pytest.raises(openai.PermissionDeniedError) as refused:
                await chat(client, model="agent/other", messages=user_turn("x"))
    assert ok.choices[0].message.content == "hi"
    assert refused.value.response.json()["error"]["code"] == "agent_not_allowed"
    assert len(agents.model.requests) == 1


async def test_an_approval_tool_is_handed_back_unrun(agents: Agents) -> None:
    await agents.create(agent("careful", {"type": "calculator", "approval": True}))
    agents.model.queue(call(("calculator", {"expression": "1+1"})))
    async with agents.sdk() as client:
        completion = await chat(client, model="agent/careful", messages=user_turn("1+1"))
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "calculator"
    assert completion.model_extra["agent"]["tool_calls"] == 0
    assert len(agents.model.requests) == 1


async def test_client_tools_mixed_with_server_tools_continue_on_the_next_request(
    agents: Agents,
) -> None:
    agents.model.queue(
        call(("calculator", {"expression": "6*7"})),
        call(("ask_user", {"question": "Which unit?"})),
    )
    messages: list[Any] = user_turn("convert 42")
    async with agents.sdk() as client:
        first = await chat(client, model="agent/helper", messages=messages, tools=[ASK_USER])
        handed = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls"
        assert [c.function.name for c in handed.tool_calls or []] == ["ask_user"]
        agents.model.queue(say("42 metres."))
        messages += [
            handed.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": handed.tool_calls[0].id, "content": "metres"},
        ]
        second = await chat(client, model="agent/helper", messages=messages, tools=[ASK_USER])
    assert second.choices[0].message.content == "42 metres."
    assert agents.model.sent(-1)[-1] == {
        "role": "tool",
        "tool_call_id": handed.tool_calls[0].id,
        "content": "metres",
    }


async def test_token_budget_stops_the_loop(agents: Agents) -> None:
    await agents.create(agent("thrifty", limits={"max_tokens": 20}))
    agents.model.queue(
        call(("calculator", {"expression": "1+1"})),
        call(("calculator", {"expression": "2+2"})),
        say("never"),
    )
    async with agents.sdk() as client:
        completion = await chat(client, model="agent/thrifty", messages=user_turn("go"))
    assert completion.model_extra["agent"]["stopped_by"] == "budget"
    assert completion.model_extra["agent"]["steps"] == 2


async def test_max_tool_calls_stops_before_running_more(agents: Agents) -> None:
    await agents.create(agent("few", limits={"max_tool_calls": 1}))
    agents.model.queue(
        call(("calculator", {"expression": "1+1"}), ("calculator", {"expression": "2+2"}))
    )
    async with agents.sdk() as client:
        completion = await chat(client, model="agent/few", messages=user_turn("go"))
    run = completion.model_extra["agent"]
    assert run["stopped_by"] == "max_tool_calls" and run["tool_calls"] == 0
