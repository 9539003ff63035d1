"""`tokenwire.usage.v1` requests into filters and dimensions, buckets into messages."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.transcode import enum_names
from server.errors import InvalidRequest
from server.keys import validate
from server.usage.query import Dimension, UsageFilter
from server.usage.store import Bucket
from server.usage.tags import MAX_SESSION_ID, MAX_USER
from tokenwire.usage.v1 import usage_pb2

_DIMENSIONS = {
    number: Dimension(name)
    for number, name in enum_names(usage_pb2.UsageDimension.DESCRIPTOR).by_number.items()
}
_FIELDS = {
    Dimension.ORGANIZATION: "organization_id",
    Dimension.KEY: "key_id",
    Dimension.SESSION: "session_id",
    Dimension.MODEL: "model",
    Dimension.USER: "user",
    Dimension.PROVIDER: "provider",
    Dimension.STATUS: "status",
    Dimension.TRACE: "trace_id",
}
_MAX_LENGTH = {
    "session_id": MAX_SESSION_ID,
    "user": MAX_USER,
    "model": 256,
    "key_id": 64,
    "trace_id": 256,
}

Request = usage_pb2.GetUsageRequest | usage_pb2.ExportUsageRequest


def filter_from(request: Request) -> UsageFilter:
    """The request's `filter` checked; errors name its fields as REST spells them."""
    given = request.filter
    values: dict[str, str | None] = {}
    for name in ("organization_id", "key_id", "session_id", "model", "user", "trace_id"):
        value = getattr(given, name) if given.HasField(name) else None
        if value is not None and len(value) > _MAX_LENGTH.get(name, 64):
            raise InvalidRequest(f"'filter.{name}' is too long.", param=f"filter.{name}")
        values[name] = value
    if values["organization_id"] is not None:
        validate.organization_id(values["organization_id"], "filter.organization_id")
    start = float(given.start_time) if given.HasField("start_time") else None
    end = float(given.end_time) if given.HasField("end_time") else None
    if start is not None and end is not None and end <= start:
        raise InvalidRequest(
            "'filter.end_time' must be after 'filter.start_time'.", param="filter.end_time"
        )
    return UsageFilter(start=start, end=end, **values)


def dimensions_from(group_by: Iterable[int]) -> list[Dimension]:
    out = []
    for value in group_by:
        if value not in _DIMENSIONS:
            raise InvalidRequest(
                "'group_by' takes session, key, organization, model, user, provider, status, "
                "hour, day or trace.",
                param="group_by",
            )
        out.append(_DIMENSIONS[value])
    return out


def bucket_message(bucket: Bucket) -> usage_pb2.UsageBucket:
    out = usage_pb2.UsageBucket(
        requests=bucket.requests,
        errors=bucket.errors,
        cancelled=bucket.cancelled,
        prompt_tokens=bucket.prompt_tokens,
        completion_tokens=bucket.completion_tokens,
        cached_tokens=bucket.cached_tokens,
        cost_usd=bucket.cost_usd,
        mean_latency_ms=bucket.mean_latency_ms,
    )
    if bucket.mean_ttft_ms is not None:
        out.mean_ttft_ms = bucket.mean_ttft_ms
    for dimension, value in bucket.dimensions.items():
        if value is None:
            continue
        if dimension in (Dimension.HOUR, Dimension.DAY):
            out.period_start = int(value)
        else:
            setattr(out, _FIELDS[dimension], str(value))
    return out
