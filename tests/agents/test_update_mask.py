"""UpdateAgent's `update_mask`, as UpdateTemplate's: over REST (httpx through the real
gateway) and gRPC, the named fields replaced (unset or empty included), the rest carried."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from tests.agents.harness import Agents, agent, agents_running
from tests.conftest import StartService
from tokenwire.agents.v1 import agents_pb2, agents_pb2_grpc

ACME = (("organization_id", "acme"),)


@pytest.fixture
async def agents(start_service: StartService) -> Any:
    async with agents_running(start_service) as running:
        await running.create(
            agent(
                description="first",
                variables={"tone": "dry", "lang": "en"},
                limits={"max_steps": 4},
            )
        )
        yield running


async def test_rest_patch_writes_exactly_the_masked_fields(agents: Agents) -> None:
    async with agents.rest() as rest:
        unmasked = await rest.patch("/v1/agents/helper", json={"variables": {}})
        patched = await rest.patch(
            "/v1/agents/helper",
            params={"update_mask": "tools,variables,description"},
            json={"tools": [{"type": "calculator"}], "model": "not-in-the-mask"},
        )
    assert unmasked.status_code == 200, unmasked.text
    # Without a mask an empty map carries over: no unmasked PATCH can empty one.
    assert unmasked.json()["variables"] == {"tone": "dry", "lang": "en"}
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["version"], body["model"], body["limits"]) == (3, "m", {"max_steps": 4})
    assert body["tools"] == [{"type": "calculator"}]
    assert "variables" not in body and "description" not in body  # named, absent: cleared


async def test_rest_patch_refuses_a_field_clients_do_not_write(agents: Agents) -> None:
    async with agents.rest() as rest:
        bad = await rest.patch(
            "/v1/agents/helper", params={"update_mask": "description,version"}, json={}
        )
        same = await rest.get("/v1/agents/helper")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "update_mask"
    assert same.json()["version"] == 1


async def test_grpc_update_with_a_mask(agents: Agents) -> None:
    changes = agents_pb2.Agent(
        limits=agents_pb2.AgentLimits(max_steps=9), variables={"tone": "warm"}
    )
    mask = field_mask_pb2.FieldMask(paths=["limits", "instructions", "variables"])
    async with agents.channel() as channel:
        stub = agents_pb2_grpc.AgentServiceStub(channel)
        request = agents_pb2.UpdateAgentRequest(agent="helper", changes=changes, update_mask=mask)
        updated = (await stub.UpdateAgent(request, metadata=ACME)).agent
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.UpdateAgent(
                agents_pb2.UpdateAgentRequest(
                    agent="helper", update_mask=field_mask_pb2.FieldMask(paths=["id"])
                ),
                metadata=ACME,
            )
    assert updated.version == 2 and updated.limits.max_steps == 9
    assert dict(updated.variables) == {"tone": "warm"}  # replaced, not merged
    assert not updated.HasField("instructions")  # named and unset: cleared
    assert updated.description == "first" and len(updated.tools) == 2  # not named: carried
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "update_mask" in (bad.value.details() or "")


async def test_openapi_documents_the_mask(agents: Agents) -> None:
    async with agents.rest() as rest:
        spec = (await rest.get("/openapi.json")).json()
    patch = spec["paths"]["/v1/agents/{agent}"]["patch"]
    assert "update_mask" in {p["name"] for p in patch.get("parameters", [])}
