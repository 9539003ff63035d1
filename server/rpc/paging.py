"""The `limit` of list calls, which several services share."""

from __future__ import annotations

from google.protobuf.message import Message

from server.errors import InvalidRequest


def page_limit(request: Message, default: int, most: int = 100) -> int:
    """The request's `limit`, `default` when unset; 400 outside [1, most]."""
    if not request.HasField("limit"):
        return default
    value: int = getattr(request, "limit")  # noqa: B009 - any request type with a `limit`
    if not 1 <= value <= most:
        raise InvalidRequest(f"'limit' must be in [1, {most}]; got {value}.", param="limit")
    return value
