"""Partial updates: an update mask replaces exactly the fields it names."""

from __future__ import annotations

import pytest

from server.errors import InvalidRequest
from server.rpc.updates import masked
from tokenwire.agents.v1 import agents_pb2

Agent = agents_pb2.Agent


def test_a_mask_replaces_maps_lists_and_messages_unset_ones_included() -> None:
    current = Agent(
        name="a",
        model="m",
        description="d",
        variables={"x": "1", "y": "2"},
        tools=[agents_pb2.AgentTool(type="calculator")],
        limits=agents_pb2.AgentLimits(max_steps=3),
    )
    changes = Agent(variables={"z": "3"}, model="ignored", instructions="new")
    out = masked(current, changes, ("variables", "tools", "limits", "instructions"))
    assert dict(out.variables) == {"z": "3"}  # replaced, not merged
    assert len(out.tools) == 0 and not out.HasField("limits")  # named and unset: cleared
    assert (out.instructions, out.model, out.description) == ("new", "m", "d")
    assert dict(current.variables) == {"x": "1", "y": "2"}  # the current one is untouched
    with pytest.raises(InvalidRequest) as caught:
        masked(current, changes, ("created_at",))
    assert caught.value.param == "update_mask" and "tools" in caught.value.message
