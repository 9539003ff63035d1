"""An agent on the embedded model, offline: SmolLM2's grammar-constrained tool calls pick
`calculator` or `memory_search`, the server runs them, and the loop ends, with no network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.runtime import app
from server.runtime.config import Config
from tests.conftest import sdk, user_turn

pytestmark = pytest.mark.local_model

MODEL = "smollm2-135m-instruct"
ORG = {"organization_id": "acme"}


@pytest.fixture(scope="module")
async def local_service() -> AsyncIterator[app.Service]:
    config = Config(
        host="127.0.0.1", http_port=0, grpc_port=0, grace=2.0, n_ctx=2048,
        database_url="sqlite://:memory:",
    )  # fmt: skip
    service = await app.start(config)
    yield service
    await service.stop()


async def test_calculator_and_memory_search_run_on_the_embedded_model(
    local_service: app.Service,
) -> None:
    definition: dict[str, Any] = {
        "name": "offline",
        "model": MODEL,
        "instructions": "Use the tools to answer.",
        "tools": [{"type": "calculator"}, {"type": "memory_search"}],
        "limits": {"max_steps": 3},
    }
    base = f"http://127.0.0.1:{local_service.http_port}"
    async with httpx.AsyncClient(base_url=base, headers=ORG) as rest:
        assert (await rest.post("/v1/agents", json=definition)).status_code == 200
        stored = await rest.post("/v1/memories", json={"content": "The answer is 42."})
        assert stored.status_code == 200
    async with sdk(local_service) as client:
        completion: Any = await client.chat.completions.create(
            model="agent/offline",
            messages=user_turn("What is 6 times 7?"),
            tool_choice="required",  # every step calls a tool: the guard ends the run
            temperature=0,
            max_tokens=48,
            extra_headers=ORG,
        )
    run = completion.model_extra["agent"]
    assert 2 <= run["steps"] <= 3 and run["tool_calls"] >= 1  # a tool ran, the model went on
    async with httpx.AsyncClient(base_url=base, headers=ORG) as rest:
        session = (await rest.get(f"/v1/sessions/{run['session_id']}")).json()
    tools = [s for s in session["steps"] if s["kind"] == "tool"]
    assert tools and {s["tool"] for s in tools} <= {"calculator", "memory_search"}
    assert any("error" not in s for s in tools)  # at least one call the model wrote ran
