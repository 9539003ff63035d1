"""A validated protobuf request into the provider-neutral `GenerationRequest`.

Validation lives here, not in the gateway, because gRPC callers never pass
through the gateway. Every error names the offending parameter.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from itertools import accumulate
from typing import Any

from gateway.transcode import enum_names
from server.errors import InvalidRequest
from server.providers import base
from tokenwire.chat.v1 import chat_pb2, message_pb2, parameters_pb2

# Enum values by their OpenAI names (ROLE_USER: "user"), as the gateway prints them.
_ROLES = enum_names(message_pb2.Role.DESCRIPTOR).by_number
_PART_TYPES = enum_names(message_pb2.ContentPartType.DESCRIPTOR).by_number
_TOOL_CHOICE = enum_names(message_pb2.ToolChoiceMode.DESCRIPTOR).by_number
_FORMATS = enum_names(message_pb2.ResponseFormatType.DESCRIPTOR).by_number
_EFFORTS = enum_names(message_pb2.ReasoningEffort.DESCRIPTOR).by_number
_DETAILS = enum_names(message_pb2.ImageDetail.DESCRIPTOR).by_number
_AUDIO_FORMATS = enum_names(message_pb2.InputAudioFormat.DESCRIPTOR).by_number


# A request past either bound converts in a thread: conversion costs ~4 µs a message (~0.5 s
# for 120k), which on the event loop would stall every other client. The message count is
# free and ByteSize ~3 ns a byte (it catches thousands of parts or tools in few messages), so
# a common request pays ~1 µs to be told apart; below the bounds conversion stays under ~10 ms.
OFFLOAD_MESSAGES = 256
OFFLOAD_BYTES = 16 * 1024


def is_large(r: chat_pb2.CreateChatCompletionRequest) -> bool:
    """Whether converting `r` takes long enough to belong off the event loop."""
    return len(r.messages) > OFFLOAD_MESSAGES or r.ByteSize() > OFFLOAD_BYTES


async def converted(
    r: chat_pb2.CreateChatCompletionRequest, provider_model: str, streamed: bool = True
) -> base.GenerationRequest:
    """`generation_request`, in a thread when `r` is large."""
    if is_large(r):
        return await asyncio.to_thread(generation_request, r, provider_model, streamed)
    return generation_request(r, provider_model, streamed)


def generation_request(
    r: chat_pb2.CreateChatCompletionRequest, provider_model: str, streamed: bool = True
) -> base.GenerationRequest:
    """The provider's view of `r`, after checking every value is in range."""
    p = r.parameters
    # Read once, not a HasField each; the parameters' names are the request's own.
    given = {fd.name: value for fd, value in (*r.ListFields(), *p.ListFields())}
    _check_ranges(r, given)
    return base.GenerationRequest(
        model=provider_model,
        messages=messages(r.messages),
        temperature=given.get("temperature"),
        top_p=given.get("top_p"),
        max_tokens=given.get("max_completion_tokens", given.get("max_tokens")),  # the newer wins
        stop=tuple(given.get("stop", ())),
        seed=given.get("seed"),
        n=given.get("n", 1),
        frequency_penalty=given.get("frequency_penalty"),
        presence_penalty=given.get("presence_penalty"),
        logit_bias=_logit_bias(p) if "logit_bias" in given else {},
        logprobs=given.get("logprobs", False),
        top_logprobs=given.get("top_logprobs"),
        response_format=_response_format(p),
        tools=tuple(_tool(t, i) for i, t in enumerate(given.get("tools", ()))),
        tool_choice=_tool_choice(p),
        parallel_tool_calls=given.get("parallel_tool_calls"),
        reasoning_effort=_EFFORTS.get(p.reasoning_effort or p.reasoning.effort),
        user=given.get("user"),
        streamed=streamed,
    )


# What each droppable parameter resets in a `GenerationRequest` when dropped.
_RESETS: dict[str, dict[str, Any]] = {
    "temperature": {"temperature": None},
    "top_p": {"top_p": None},
    "stop": {"stop": ()},
    "seed": {"seed": None},
    "n": {"n": 1},
    "frequency_penalty": {"frequency_penalty": None},
    "presence_penalty": {"presence_penalty": None},
    "logit_bias": {"logit_bias": {}},
    "logprobs": {"logprobs": False, "top_logprobs": None},
    "top_logprobs": {"top_logprobs": None},
    "response_format": {"response_format": None},
    "tools": {"tools": (), "tool_choice": None},
    "tool_choice": {"tool_choice": None},
    "parallel_tool_calls": {"parallel_tool_calls": None},
    "reasoning": {"reasoning_effort": None},
    "reasoning_effort": {"reasoning_effort": None},
}


def without(request: base.GenerationRequest, dropped: tuple[str, ...]) -> base.GenerationRequest:
    """`request` with the dropped parameters left out, so the provider never sees them."""
    changes: dict[str, Any] = {}
    for name in dropped:
        changes.update(_RESETS.get(name, {}))
    return replace(request, **changes) if changes else request


# The bounds of the numeric parameters, checked in this order.
_RANGES = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "frequency_penalty": (-2.0, 2.0),
    "presence_penalty": (-2.0, 2.0),
    "top_logprobs": (0, 20),
    "n": (1, 128),
    "max_tokens": (1, 2**31 - 1),
    "max_completion_tokens": (1, 2**31 - 1),
}


def _check_ranges(r: chat_pb2.CreateChatCompletionRequest, given: dict[str, Any]) -> None:
    for name, (low, high) in _RANGES.items():
        value = given.get(name)
        if value is not None and not low <= value <= high:
            raise InvalidRequest(
                f"Invalid value for '{name}': {value:g} is not in [{low:g}, {high:g}].",
                param=name,
            )
    if len(r.parameters.stop) > 4:
        raise InvalidRequest("'stop' takes at most 4 sequences.", param="stop")
    if "top_logprobs" in given and not r.logprobs:
        raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
    if "user" in given and len(r.user) > 256:
        raise InvalidRequest("'user' is longer than 256 characters.", param="user")
    if len(r.metadata) > 16:
        raise InvalidRequest("'metadata' takes at most 16 pairs.", param="metadata")


def messages(items: Sequence[message_pb2.ChatMessage]) -> tuple[base.Message, ...]:
    if not items:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    return tuple(_message(m, f"messages[{i}]") for i, m in enumerate(items))


def _message(m: message_pb2.ChatMessage, param: str) -> base.Message:
    given = {fd.name: value for fd, value in m.ListFields()}  # read once, not a HasField each
    role = _ROLES.get(given.get("role", 0))
    if role is None:
        raise InvalidRequest(f"'{param}.role' is required.", param=f"{param}.role")
    if role == "tool" and not given.get("tool_call_id"):
        raise InvalidRequest(
            f"'{param}.tool_call_id' is required for tool messages.", param=f"{param}.tool_call_id"
        )
    content = _content(given, param)
    calls = given.get("tool_calls", ())
    if content is None and not (role == "assistant" and calls):
        raise InvalidRequest(f"'{param}.content' is required.", param=f"{param}.content")
    return base.Message(
        role=role,
        content=content,
        name=given.get("name"),
        tool_calls=tuple(base.ToolCall(c.id, c.function.name, c.function.arguments) for c in calls),
        tool_call_id=given.get("tool_call_id"),
        reasoning=given.get("reasoning"),
    )


def _content(given: dict[str, Any], param: str) -> str | tuple[base.ContentPart, ...] | None:
    """The message's content: its text, its parts, or None when it sets neither."""
    if "content_text" in given:
        text: str = given["content_text"]
        return text
    if "content_parts" not in given:
        return None
    parts = given["content_parts"].parts
    return tuple(_part(p, f"{param}.content[{i}]") for i, p in enumerate(parts))


def _part(p: message_pb2.ContentPart, param: str) -> base.ContentPart:
    kind = _PART_TYPES.get(p.type)
    if kind is None:
        raise InvalidRequest(f"'{param}.type' is required.", param=f"{param}.type")
    needed = {
        "text": p.HasField("text"),
        "image_url": p.HasField("image_url"),
        "input_audio": p.HasField("input_audio"),
        "file": p.HasField("file"),
        "refusal": p.HasField("refusal"),
    }[kind]
    if not needed:
        raise InvalidRequest(
            f"'{param}.{kind}' is required for a {kind} part.", param=f"{param}.{kind}"
        )
    return base.ContentPart(
        type=kind,
        text=p.text if kind == "text" else (p.refusal if kind == "refusal" else None),
        url=p.image_url.url or None,
        detail=_DETAILS.get(p.image_url.detail),
        data=p.input_audio.data or (p.file.file_data if p.file.HasField("file_data") else None),
        format=_AUDIO_FORMATS.get(p.input_audio.format),
        file_id=p.file.file_id if p.file.HasField("file_id") else None,
        filename=p.file.filename if p.file.HasField("filename") else None,
        cache_control=_cache_control(p, param) if p.HasField("cache_control") else None,
    )


def _cache_control(p: message_pb2.ContentPart, param: str) -> base.CacheControl:
    c = p.cache_control
    if c.type != "ephemeral":
        raise InvalidRequest(
            f"'{param}.cache_control.type' must be 'ephemeral'.", param=f"{param}.cache_control"
        )
    if c.HasField("ttl") and c.ttl not in ("5m", "1h"):
        raise InvalidRequest(
            f"'{param}.cache_control.ttl' must be '5m' or '1h'.", param=f"{param}.cache_control"
        )
    return base.CacheControl(c.type, c.ttl if c.HasField("ttl") else None)


def _logit_bias(r: parameters_pb2.GenerationParameters) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, bias in r.logit_bias.items():
        if not key.lstrip("-").isdigit():
            raise InvalidRequest(
                f"'logit_bias' keys are token ids; got '{key}'.", param="logit_bias"
            )
        if not -100 <= bias <= 100:
            raise InvalidRequest(f"'logit_bias.{key}' is not in [-100, 100].", param="logit_bias")
        out[int(key)] = bias
    return out


def _response_format(r: parameters_pb2.GenerationParameters) -> base.ResponseFormat | None:
    if not r.HasField("response_format"):
        return None
    f = r.response_format
    kind = _FORMATS.get(f.type)
    if kind is None:
        raise InvalidRequest("'response_format.type' is required.", param="response_format.type")
    if kind != "json_schema":
        return base.ResponseFormat(kind)
    s = f.json_schema
    if not s.name:
        raise InvalidRequest(
            "'response_format.json_schema.name' is required.",
            param="response_format.json_schema.name",
        )
    _json_text(s.schema, "response_format.json_schema.schema")
    return base.ResponseFormat(
        kind, s.schema or None, s.name, s.strict if s.HasField("strict") else None
    )


def _tool(t: message_pb2.Tool, i: int) -> base.Tool:
    f = t.function
    if not f.name:
        raise InvalidRequest(
            f"'tools[{i}].function.name' is required.", param=f"tools[{i}].function.name"
        )
    _json_text(f.parameters, f"tools[{i}].function.parameters")
    return base.Tool(
        f.name,
        f.description if f.HasField("description") else None,
        f.parameters or None,
        f.strict if f.HasField("strict") else None,
    )


# Deepest nesting accepted in a raw-JSON field: real schemas stay far below it, and
# Python's parser fails with RecursionError near 1,000 levels.
MAX_JSON_DEPTH = 64
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deep brackets nest in JSON `text`, without parsing it (strings skipped)."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _json_text(text: str, param: str) -> None:
    """gRPC callers fill raw-JSON fields by hand: make sure they hold a JSON object."""
    if not text:
        return
    if json_depth(text) > MAX_JSON_DEPTH:
        raise InvalidRequest(
            f"'{param}' is nested more than {MAX_JSON_DEPTH} levels deep.", param=param
        )
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidRequest(f"'{param}' is not valid JSON.", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{param}' must be a JSON object.", param=param)


def _tool_choice(r: parameters_pb2.GenerationParameters) -> base.ToolChoice | None:
    which = r.WhichOneof("tool_choice")
    if which == "tool_choice_mode":
        mode = _TOOL_CHOICE.get(r.tool_choice_mode)
        return base.ToolChoice(mode) if mode else None
    if which == "tool_choice_named":
        name = r.tool_choice_named.function.name
        if not any(t.function.name == name for t in r.tools):
            raise InvalidRequest(
                f"'tool_choice' names '{name}', which is not in 'tools'.", param="tool_choice"
            )
        return base.ToolChoice("function", name)
    return None
