"""What the loop knows of a tool: its definition for the model, and how to run it.

A tool's failure (bad arguments, refusal, its server gone) raises `ToolFailed`;
the loop turns it, and timeouts, into a result telling the model so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from server.errors import ToolFailed
from tokenwire.chat.v1 import message_pb2


class ServerTool(Protocol):
    @property
    def name(self) -> str:
        """The function name the model calls."""
        ...

    @property
    def definition(self) -> message_pb2.Tool:
        """The function definition the model is shown."""
        ...

    async def run(self, arguments: dict[str, Any]) -> str:
        """The result text; raises `ToolFailed`."""
        ...


@dataclass(frozen=True, slots=True)
class Policy:
    """How the loop treats a tool: `approval` ones go back to the client unrun."""

    timeout: float
    approval: bool = False


def function(
    name: str, description: str, properties: dict[str, Any], required: list[str]
) -> message_pb2.Tool:
    """A function tool definition with an object schema."""
    schema = {"type": "object", "properties": properties, "required": required}
    return message_pb2.Tool(
        type=message_pb2.TOOL_TYPE_FUNCTION,
        function=message_pb2.FunctionDefinition(
            name=name, description=description, parameters=json.dumps(schema)
        ),
    )


def text_argument(arguments: dict[str, Any], name: str) -> str:
    """A required string argument, else `ToolFailed` naming it."""
    value = arguments.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ToolFailed(f"argument '{name}' must be a non-empty string")
    return value
