"""A template's default parameters under a chat request's own.

The request wins: a default applies only to a parameter the request left
unset. Parameters that are two spellings of one setting (`max_tokens` and
`max_completion_tokens`; `reasoning` and `reasoning_effort`) count as set
when the request sets either, and members of a oneof (`tool_choice`) as set
when the request sets any of them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from tokenwire.chat.v1 import parameters_pb2

Parameters = parameters_pb2.GenerationParameters

_SAME_SETTING = (
    frozenset({"max_tokens", "max_completion_tokens"}),
    frozenset({"reasoning", "reasoning_effort"}),
)


def _is_set(message: Message, fd: FieldDescriptor) -> bool:
    """Whether the message gives a value for this field."""
    value = getattr(message, fd.name)
    if fd.is_repeated:
        return len(value) > 0
    if fd.containing_oneof is not None:
        return message.WhichOneof(fd.containing_oneof.name) is not None
    if fd.has_presence:
        return message.HasField(fd.name)
    return bool(value != fd.default_value)


def _siblings(name: str) -> frozenset[str]:
    return next((group for group in _SAME_SETTING if name in group), frozenset({name}))


def _given(own: Parameters, name: str) -> bool:
    fields = Parameters.DESCRIPTOR.fields_by_name
    return any(_is_set(own, fields[n]) for n in _siblings(name))


def apply(own: Parameters, defaults: Parameters) -> list[str]:
    """Copy into `own` each default it leaves unset; returns the names copied."""
    applied = []
    for fd, value in defaults.ListFields():
        if not _given(own, fd.name):
            _copy(own, fd, value)
            applied.append(fd.name)
    return applied


def _copy(own: Parameters, fd: FieldDescriptor, value: Any) -> None:
    target = getattr(own, fd.name)
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        target.update(value)  # the parameters' maps all hold scalars
    elif fd.is_repeated:
        target.extend(value)
    elif fd.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(own, fd.name, value)
