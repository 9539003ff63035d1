"""PATCH without an update mask: the fields a partial message sets replace the current ones.

Shared by the versioned stores (templates, agents). Output-only fields (`id`,
`version`, timestamps: `google.api.field_behavior` OUTPUT_ONLY in the contract)
are never taken from a client's changes.
"""

from __future__ import annotations

from typing import Any, TypeVar

from google.api import field_behavior_pb2
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)
_BEHAVIOR: Any = field_behavior_pb2.field_behavior  # its stubs type it as a plain descriptor


def output_only(kind: type[Message]) -> tuple[str, ...]:
    """The names of the message type's fields only the server writes."""
    return tuple(
        f.name
        for f in kind.DESCRIPTOR.fields
        if field_behavior_pb2.OUTPUT_ONLY in f.GetOptions().Extensions[_BEHAVIOR]
    )


def merge(current: M, changes: M) -> M:
    """`current` with each field `changes` sets replaced (empty lists and maps carry over)."""
    out = type(current)()
    out.CopyFrom(current)
    target: Message = out  # by name: the generated stubs type field names as literals
    skipped = output_only(type(current))
    for field, value in changes.ListFields():
        if field.name in skipped:
            continue
        target.ClearField(field.name)
        if field.message_type is not None and not field.is_repeated:
            getattr(out, field.name).CopyFrom(value)
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            getattr(out, field.name).update(value)
        elif field.is_repeated:
            getattr(out, field.name).extend(value)
        else:
            setattr(out, field.name, value)
    return out
