"""Templates end to end: REST through the gateway, chat through the official `openai` SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from server.storage.database import Database
from tests.conftest import user_turn
from tests.templates.stack import Stack, start_stack

SUPPORT = {
    "name": "support",
    "description": "Customer support persona",
    "messages": [
        {"role": "system", "content": "You support {{product}} customers in a {{tone}} tone."},
        {"role": "user", "content": [{"type": "text", "text": "Account: {{account}}"}]},
    ],
    "variables": [
        {"name": "product", "description": "What they bought"},
        {"name": "tone", "default": "friendly"},
        {"name": "account", "default": "unknown"},
    ],
    "model": "fake-echo",
    "parameters": {"temperature": 0.2, "max_tokens": 40, "stop": "END"},
}


@pytest.fixture
async def stack(database: Database) -> AsyncIterator[Stack]:
    stack = await start_stack(database)
    yield stack
    await stack.stop()


@pytest.fixture
async def rest(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.http_port}") as client:
        yield client


def acme(**headers: str) -> dict[str, str]:
    return {"organization_id": "acme", **headers}


async def create(rest: httpx.AsyncClient, body: dict[str, Any], org: str = "acme") -> Any:
    response = await rest.post("/v1/templates", json=body, headers={"organization_id": org})
    assert response.status_code == 200, response.text
    return response.json()


async def test_rest_crud_is_openai_shaped(rest: httpx.AsyncClient) -> None:
    created = await create(rest, SUPPORT)
    assert created["object"] == "template" and created["version"] == 1
    assert created["variables"][1] == {"name": "tone", "default": "friendly"}
    assert created["parameters"] == {"temperature": 0.2, "max_tokens": 40, "stop": ["END"]}
    assert created["messages"][1]["content"] == [{"type": "text", "text": "Account: {{account}}"}]
    got = await rest.get(f"/v1/templates/{created['id']}", headers=acme())
    assert got.json() == created
    patched = await rest.patch("/v1/templates/support", json={"description": "v2"}, headers=acme())
    assert patched.json()["version"] == 2 and patched.json()["description"] == "v2"
    posted = await rest.post("/v1/templates/support", json={"model": ""}, headers=acme())
    assert posted.json()["version"] == 3 and "model" not in posted.json()
    old = await rest.get("/v1/templates/support", params={"version": 1}, headers=acme())
    assert old.json()["description"] == "Customer support persona"
    listed = (await rest.get("/v1/templates", headers=acme())).json()
    assert listed["object"] == "list" and listed["has_more"] is False
    assert [t["version"] for t in listed["data"]] == [3]
    deleted = await rest.delete("/v1/templates/support", headers=acme())
    assert deleted.json() == {"id": created["id"], "object": "template.deleted", "deleted": True}
    gone = await rest.get("/v1/templates/support", headers=acme())
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "template_not_found"


async def test_rest_patch_with_an_update_mask(rest: httpx.AsyncClient) -> None:
    await create(rest, SUPPORT)
    patched = await rest.patch(
        "/v1/templates/support",
        params={"update_mask": "description,parameters"},
        json={"description": "v2", "model": "not-in-the-mask"},
        headers=acme(),
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["version"], body["description"], body["model"]) == (2, "v2", "fake-echo")
    assert "parameters" not in body  # named, left out of the body: cleared
    bad = await rest.patch(
        "/v1/templates/support", params={"update_mask": "version"}, json={}, headers=acme()
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "update_mask"


async def test_rest_errors(rest: httpx.AsyncClient) -> None:
    no_org = await rest.get("/v1/templates")
    assert no_org.status_code == 400
    assert no_org.json()["error"]["code"] == "organization_required"
    await create(rest, SUPPORT)
    taken = await rest.post("/v1/templates", json=SUPPORT, headers=acme())
    assert taken.status_code == 409 and taken.json()["error"]["param"] == "name"
    undeclared = {**SUPPORT, "name": "x", "variables": []}
    bad = await rest.post("/v1/templates", json=undeclared, headers=acme())
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "variables"


async def test_chat_renders_the_template_with_variables(stack: Stack) -> None:
    async with stack.client("acme") as client:
        await client.post("/templates", body=SUPPORT, cast_to=object)
        completion = await client.chat.completions.create(
            model="",
            messages=user_turn("Why was I billed twice?"),
            temperature=1.0,
            extra_body={"template": "support", "variables": {"product": "Rocket {{tone}}"}},
        )
    assert completion.model == "fake-echo"  # the template's default model
    assert completion.choices[0].message.content == "Why was I billed twice? "
    assert stack.seen() == [
        ("system", "You support Rocket {{tone}} customers in a friendly tone."),
        ("user", "Account: unknown"),
        ("user", "Why was I billed twice?"),
    ]
    seen = stack.fake.config.seen[-1]
    assert (seen.temperature, seen.max_tokens, seen.stop) == (1.0, 40, ("END",))
    usage = stack.usage.records[-1]
    assert (usage.template, usage.template_version, usage.status) == ("support", 1, "ok")


async def test_streamed_chat_with_a_template(stack: Stack) -> None:
    async with stack.client("acme") as client:
        await client.post("/templates", body=SUPPORT, cast_to=object)
        stream = await client.chat.completions.create(
            model="fake-echo",
            messages=user_turn("hello there"),
            stream=True,
            extra_body={"template": "support", "variables": {"product": "Kite"}},
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "hello there "
    assert stack.seen()[0] == ("system", "You support Kite customers in a friendly tone.")
    assert stack.usage.records[-1].template == "support"


async def test_chat_template_errors(stack: Stack) -> None:
    messages = user_turn("hi")
    async with stack.client("acme") as client:
        await client.post("/templates", body=SUPPORT, cast_to=object)
        with pytest.raises(openai.NotFoundError) as missing_template:
            await client.chat.completions.create(
                model="fake-echo", messages=messages, extra_body={"template": "nope"}
            )
        assert missing_template.value.code == "template_not_found"
        with pytest.raises(openai.UnprocessableEntityError) as missing:
            await client.chat.completions.create(
                model="fake-echo", messages=messages, extra_body={"template": "support"}
            )
        assert "'product'" in missing.value.message
        with pytest.raises(openai.UnprocessableEntityError) as undeclared:
            await client.chat.completions.create(
                model="fake-echo",
                messages=messages,
                extra_body={"template": "support", "variables": {"product": "P", "sku": "1"}},
            )
        assert "'sku'" in undeclared.value.message
    async with stack.client() as anonymous:
        with pytest.raises(openai.BadRequestError) as no_org:
            await anonymous.chat.completions.create(
                model="fake-echo", messages=messages, extra_body={"template": "support"}
            )
        assert no_org.value.code == "organization_required"


async def test_organizations_cannot_use_each_others_templates(stack: Stack) -> None:
    async with stack.client("acme") as acme_client, stack.client("globex") as globex_client:
        created = await acme_client.post("/templates", body=SUPPORT, cast_to=dict[str, Any])
        for ref in ("support", created["id"]):
            with pytest.raises(openai.NotFoundError):
                await globex_client.chat.completions.create(
                    model="fake-echo",
                    messages=user_turn("hi"),
                    extra_body={"template": ref, "variables": {"product": "P"}},
                )
        own = {**SUPPORT, "messages": [{"role": "system", "content": "GLOBEX {{product}}"}]}
        await globex_client.post("/templates", body=own, cast_to=object)
        await globex_client.chat.completions.create(
            model="fake-echo",
            messages=user_turn("hi"),
            extra_body={"template": "support", "variables": {"product": "P"}},
        )
    assert stack.seen()[0] == ("system", "GLOBEX P")
