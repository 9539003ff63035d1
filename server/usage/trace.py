"""A request's `trace` (OpenRouter's observability fields) as kept with its usage record.

`trace_id` is a column of its own (usage can be filtered and grouped by it); the
whole object — `trace_name`, `span_name`, `generation_name`, `parent_span_id` and
the caller's own `metadata` — is kept as JSON text beside it, to become span
attributes when tracing lands. Each value is at most 256 characters and
`metadata` holds at most 16 pairs: a 400 names the field otherwise.
"""

from __future__ import annotations

import json

from server.errors import InvalidRequest
from tokenwire.chat.v1 import chat_pb2, routing_pb2

MAX_VALUE = 256
MAX_METADATA = 16


def values(request: chat_pb2.CreateChatCompletionRequest) -> list[tuple[str, str]]:
    """Each text of the trace and the parameter naming it (`server.usage.tags` bounds them);
    more than MAX_METADATA pairs of `metadata` is a 400."""
    if not request.HasField("trace"):
        return []
    trace = request.trace
    if len(trace.metadata) > MAX_METADATA:
        raise InvalidRequest(
            f"'trace.metadata' takes at most {MAX_METADATA} pairs.", param="trace.metadata"
        )
    values = [(f"trace.{name}", value) for name, value in _named(trace).items()]
    for key, value in trace.metadata.items():
        values += [("trace.metadata", key), (f"trace.metadata.{key}", value)]
    return values


def trace_id(request: chat_pb2.CreateChatCompletionRequest) -> str | None:
    trace = request.trace
    return trace.trace_id if trace.HasField("trace_id") else None


def trace_json(request: chat_pb2.CreateChatCompletionRequest) -> str | None:
    """The whole trace as JSON text, or None when the request has none."""
    if not request.HasField("trace"):
        return None
    trace = request.trace
    out: dict[str, object] = dict(_named(trace))
    if trace.metadata:
        out["metadata"] = dict(sorted(trace.metadata.items()))
    return json.dumps(out, ensure_ascii=False)


def _named(trace: routing_pb2.Trace) -> dict[str, str]:
    """The named fields set (all but `metadata`), in field order."""
    return {fd.name: value for fd, value in trace.ListFields() if fd.name != "metadata"}
