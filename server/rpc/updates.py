"""PATCH: without an update mask the fields a partial message sets replace the current
ones (`merge`); with one, exactly the fields it names do, unset or empty included (`masked`).

Shared by the versioned stores (templates, agents). Output-only fields (`id`,
`version`, timestamps: `google.api.field_behavior` OUTPUT_ONLY in the contract)
are never taken from a client's changes, nor named by a mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from google.api import field_behavior_pb2
from google.protobuf.message import Message

from server.errors import InvalidRequest

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


def writable(kind: type[Message]) -> tuple[str, ...]:
    """The names of the message type's fields a client writes (those a mask may name)."""
    written = output_only(kind)
    return tuple(f.name for f in kind.DESCRIPTOR.fields if f.name not in written)


def masked(current: M, changes: M, mask: Sequence[str]) -> M:
    """`current` with each field `mask` names taken from `changes`, unset or empty included."""
    maskable = writable(type(current))
    out = type(current)()
    out.CopyFrom(current)
    for path in mask:
        if path not in maskable:
            raise InvalidRequest(
                f"'update_mask' names '{path}'; it takes {', '.join(maskable)}.",
                param="update_mask",
            )
        _replace(out, changes, path)
    return out


def _replace(target: Message, source: Message, path: str) -> None:
    """`target`'s field `path` made `source`'s: cleared first, so an unset one stays unset."""
    target.ClearField(path)
    field = target.DESCRIPTOR.fields_by_name[path]
    if field.is_repeated:  # lists and maps: MergeFrom into the emptied field copies them
        getattr(target, path).MergeFrom(getattr(source, path))
    elif field.message_type is not None:
        if source.HasField(path):
            getattr(target, path).CopyFrom(getattr(source, path))
    elif not field.has_presence or source.HasField(path):
        setattr(target, path, getattr(source, path))
