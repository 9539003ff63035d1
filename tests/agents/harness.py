"""tokenwire with agents, in front of a scripted model: helpers shared by the agent tests."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import openai

from server.runtime import app, upstreams
from tests.agents.scripted import ScriptedModel
from tests.conftest import StartService

MODEL = "m"
OTHER_MODEL = "m2"  # the same scripted upstream under another name (replays)
ORG = "acme"


@dataclass
class Agents:
    """A running tokenwire whose model `m` is the scripted one."""

    service: app.Service
    model: ScriptedModel

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.service.http_port}"

    def sdk(self, org: str = ORG, **headers: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{self.base}/v1",
            api_key="unused",
            max_retries=0,
            default_headers={"organization_id": org, **headers},
        )

    def rest(self, org: str = ORG) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, headers={"organization_id": org}, timeout=30)

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(f"127.0.0.1:{self.service.grpc_port}")

    async def create(self, body: dict[str, Any], org: str = ORG) -> dict[str, Any]:
        async with self.rest(org) as rest:
            response = await rest.post("/v1/agents", json=body)
        assert response.status_code == 200, response.text
        created: dict[str, Any] = response.json()
        return created


def agent(name: str = "helper", *tools: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An agent definition on model `m` with the given tools."""
    return {
        "name": name,
        "model": MODEL,
        "instructions": "You help.",
        "tools": list(tools) or [{"type": "calculator"}, {"type": "current_time"}],
        **fields,
    }


@contextlib.asynccontextmanager
async def agents_running(start: StartService, **settings: Any) -> AsyncIterator[Agents]:
    """tokenwire (open mode, on loopback) with model `m` served by a scripted upstream."""
    model = ScriptedModel()
    async with model:
        config = upstreams.parse(
            {"p0": {"base_url": model.url, "api_key_env": "UP_KEY"}},
            [
                {"id": MODEL, "provider": "p0", "upstream": "up-m", "prompt_price": 1.0},
                {"id": OTHER_MODEL, "provider": "p0", "upstream": "up-m2"},
            ],
            {"UP_KEY": "sk-test"},
        )
        settings = {"mcp_commands": (sys.executable,), **settings}
        service = await start([], upstreams=config, **settings)
        yield Agents(service, model)
