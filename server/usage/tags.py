"""`TagStage`: the tags usage is grouped by, checked before anything is spent.

`session_id` comes from the body or the `x-session-id` header (the body
wins) and is at most 128 characters; `user` is at most 256. Anything longer,
or holding NUL (`refuse_nul`: PostgreSQL cannot store it), is a 400 naming
the field, never a truncated record. So is a `trace` past its bounds
(`server.usage.trace`).
"""

from __future__ import annotations

from server.errors import InvalidRequest
from server.pipeline.context import RequestContext, UsageRecord
from server.storage.database import refuse_nul
from server.usage import trace

MAX_SESSION_ID = 128
MAX_USER = 256


def check(ctx: RequestContext) -> None:
    request = ctx.request
    session = ctx.session_id
    if session is not None:
        param = "session_id" if request.HasField("session_id") else "x-session-id"
        _check(session, param, MAX_SESSION_ID)
    if request.HasField("user"):
        _check(request.user, "user", MAX_USER)
    for param, value in trace.values(request):
        _check(value, param, trace.MAX_VALUE)


def _check(value: str, param: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidRequest(
            f"'{param}' is at most {limit} characters.",
            param=param,
            code="string_above_max_length",
        )
    refuse_nul((value,), param)


class TagStage:
    async def before(self, ctx: RequestContext) -> None:
        check(ctx)

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        return None
