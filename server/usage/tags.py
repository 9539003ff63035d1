"""`TagStage`: the tags usage is grouped by, checked before anything is spent.

`session_id` comes from the body or the `x-session-id` header (the body
wins) and is at most 128 characters; `user` is at most 256. Anything longer
is a 400 naming the field, never a truncated record.
"""

from __future__ import annotations

from server.context import RequestContext, UsageRecord
from server.errors import InvalidRequest

MAX_SESSION_ID = 128
MAX_USER = 256


def check(ctx: RequestContext) -> None:
    request = ctx.request
    session = ctx.session_id
    if session is not None and len(session) > MAX_SESSION_ID:
        param = "session_id" if request.HasField("session_id") else "x-session-id"
        raise InvalidRequest(
            f"'{param}' is at most {MAX_SESSION_ID} characters.",
            param=param,
            code="string_above_max_length",
        )
    if request.HasField("user") and len(request.user) > MAX_USER:
        raise InvalidRequest(
            f"'user' is at most {MAX_USER} characters.",
            param="user",
            code="string_above_max_length",
        )


class TagStage:
    async def before(self, ctx: RequestContext) -> None:
        check(ctx)

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        return None
