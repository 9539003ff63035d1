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

from tokenwire.chat.v1 import chat_pb2
from tokenwire.templates.v1 import templates_pb2

Request = chat_pb2.CreateChatCompletionRequest

_SAME_SETTING = (
    frozenset({"max_tokens", "max_completion_tokens"}),
    frozenset({"reasoning", "reasoning_effort"}),
)

# Never taken from defaults (`TemplateParameters` has no such fields anyway).
NOT_DEFAULTABLE = frozenset(
    {"messages", "model", "template", "variables", "stream", "stream_options", "session_id"}
)


def as_request(parameters: templates_pb2.TemplateParameters) -> Request:
    """The parameters as a partial chat request: the two share field numbers and types."""
    return Request.FromString(parameters.SerializeToString())


def is_set(request: Message, fd: FieldDescriptor) -> bool:
    """Whether the request gives a value for this field."""
    value = getattr(request, fd.name)
    if fd.is_repeated:
        return len(value) > 0
    if fd.containing_oneof is not None:
        return request.WhichOneof(fd.containing_oneof.name) is not None
    if fd.has_presence:
        return request.HasField(fd.name)
    return bool(value != fd.default_value)


def _siblings(name: str) -> frozenset[str]:
    return next((group for group in _SAME_SETTING if name in group), frozenset({name}))


def _given(request: Request, name: str) -> bool:
    fields = Request.DESCRIPTOR.fields_by_name
    return any(is_set(request, fields[n]) for n in _siblings(name))


def apply(request: Request, defaults: Request) -> list[str]:
    """Copy into `request` each default it leaves unset; returns the names copied."""
    applied = []
    for fd, value in defaults.ListFields():
        if fd.name in NOT_DEFAULTABLE or _given(request, fd.name):
            continue
        _copy(request, fd, value)
        applied.append(fd.name)
    return applied


def _copy(request: Request, fd: FieldDescriptor, value: Any) -> None:
    target = getattr(request, fd.name)
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        target.update(value)  # the request's maps all hold scalars
    elif fd.is_repeated:
        target.extend(value)
    elif fd.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(request, fd.name, value)
