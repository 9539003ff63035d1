"""Memory end to end: REST through the gateway, recall seen by the provider via the `openai` SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from server.storage.database import Database
from tests.conftest import user_turn
from tests.templates.stack import Stack, start_stack

QUESTION = user_turn("Which day do we deploy on?")
IDS = "x-tokenwire-memory-ids"


@pytest.fixture
async def stack(database: Database) -> AsyncIterator[Stack]:
    stack = await start_stack(database)
    yield stack
    await stack.stop()


@pytest.fixture
async def rest(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.http_port}") as client:
        yield client


async def remember(rest: httpx.AsyncClient, org: str, content: str, **fields: str) -> Any:
    response = await rest.post(
        "/v1/memories", json={"content": content, **fields}, headers={"organization_id": org}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def ask(client: openai.AsyncOpenAI, **extra: Any) -> Any:
    return await client.chat.completions.with_raw_response.create(
        model="fake-echo", messages=QUESTION, **extra
    )


async def test_rest_add_list_search_delete(rest: httpx.AsyncClient) -> None:
    acme = {"organization_id": "acme"}
    added = await remember(rest, "acme", "We deploy on Tuesdays.", user="ada")
    assert added["object"] == "memory" and added["user"] == "ada" and added["source"] == "api"
    assert "session_id" not in added and "score" not in added
    listed = (await rest.get("/v1/memories", params={"user": "ada"}, headers=acme)).json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == [added["id"]]
    found = await rest.post(
        "/v1/memories:search", json={"query": "deploy day", "user": "ada"}, headers=acme
    )
    assert [m["id"] for m in found.json()["data"]] == [added["id"]]
    assert found.json()["data"][0]["score"] > 0
    got = await rest.get(f"/v1/memories/{added['id']}", headers=acme)
    assert got.json() == added
    deleted = await rest.delete(f"/v1/memories/{added['id']}", headers=acme)
    assert deleted.json() == {"id": added["id"], "object": "memory.deleted", "deleted": True}
    again = await rest.delete(f"/v1/memories/{added['id']}", headers=acme)
    assert again.status_code == 404 and again.json()["error"]["code"] == "memory_not_found"
    assert (await rest.get("/v1/memories")).json()["error"]["code"] == "organization_required"


async def test_recalled_memory_reaches_the_provider(stack: Stack, rest: httpx.AsyncClient) -> None:
    deploy = await remember(rest, "acme", "We deploy on Tuesdays at 14:00 UTC.")
    await remember(rest, "acme", "The cafeteria serves pizza on Fridays.")
    async with stack.client("acme") as client:
        raw = await ask(client)
    assert raw.headers[IDS] == deploy["id"]
    assert stack.seen() == [
        (
            "system",
            f'Relevant memories:\n<memory id="{deploy["id"]}">'
            "We deploy on Tuesdays at 14:00 UTC.</memory>",
        ),
        ("user", "Which day do we deploy on?"),
    ]
    assert stack.usage.records[-1].memory_ids == (deploy["id"],)


async def test_streamed_request_carries_the_ids_header(
    stack: Stack, rest: httpx.AsyncClient
) -> None:
    deploy = await remember(rest, "acme", "We deploy on Tuesdays.")
    async with stack.client("acme") as client:
        response = client.chat.completions.with_streaming_response.create(
            model="fake-echo", messages=QUESTION, stream=True
        )
        async with response as stream:
            assert stream.headers[IDS] == deploy["id"]
            chunks = [line async for line in stream.iter_lines() if line]
    assert chunks[-1] == "data: [DONE]"
    assert stack.seen()[0][1].startswith("Relevant memories:")


async def test_recall_off_per_request(stack: Stack, rest: httpx.AsyncClient) -> None:
    await remember(rest, "acme", "We deploy on Tuesdays.")
    async with stack.client("acme") as client:
        raw = await ask(client, metadata={"memory": "off"})
    assert IDS not in raw.headers
    assert stack.seen() == [("user", "Which day do we deploy on?")]
    assert stack.usage.records[-1].memory_ids == ()


async def test_memories_never_cross_organizations(stack: Stack, rest: httpx.AsyncClient) -> None:
    secret = await remember(rest, "globex", "Globex deploys on Sundays; launch code swordfish.")
    globex = {"organization_id": "globex"}
    async with stack.client("acme") as acme, stack.client() as anonymous:
        for client in (acme, anonymous):
            raw = await ask(client)
            assert IDS not in raw.headers
            assert stack.seen() == [("user", "Which day do we deploy on?")]
    acme_headers = {"organization_id": "acme"}
    assert (await rest.get("/v1/memories", headers=acme_headers)).json()["data"] == []
    search = await rest.post(
        "/v1/memories:search", json={"query": "globex swordfish deploys"}, headers=acme_headers
    )
    assert search.json()["data"] == []
    for verb in ("GET", "DELETE"):
        stolen = await rest.request(verb, f"/v1/memories/{secret['id']}", headers=acme_headers)
        assert stolen.status_code == 404
    still = await rest.get(f"/v1/memories/{secret['id']}", headers=globex)
    assert still.json()["content"] == secret["content"]
    async with stack.client("globex") as client:
        raw = await ask(client)
    assert raw.headers[IDS] == secret["id"]


async def test_auto_store_then_recall(stack: Stack, rest: httpx.AsyncClient) -> None:
    acme = {"organization_id": "acme"}
    settings = await rest.patch("/v1/memory/settings", json={"auto_store": True}, headers=acme)
    assert settings.json() == {"auto_store": True}
    other = await rest.get("/v1/memory/settings", headers={"organization_id": "globex"})
    assert other.json() == {"auto_store": False}
    told = user_turn("Remember: our staging cluster is named Borealis.")
    async with stack.client("acme") as client:
        await client.chat.completions.create(model="fake-echo", messages=told, user="ada")
        await stack.settle()
        stored = (await rest.get("/v1/memories", headers=acme)).json()["data"]
        assert [(m["content"], m["user"], m["source"]) for m in stored] == [
            (told[0]["content"], "ada", "auto")
        ]
        question = user_turn("What is the staging cluster called?")
        raw = await client.chat.completions.with_raw_response.create(
            model="fake-echo", messages=question, user="ada"
        )
    assert raw.headers[IDS] == stored[0]["id"]
    assert "Borealis" in stack.seen()[0][1]
    async with stack.client("globex") as client:
        await client.chat.completions.create(model="fake-echo", messages=told)
    assert (await rest.get("/v1/memories", headers={"organization_id": "globex"})).json()[
        "data"
    ] == []
