"""`AuthStage`: the first stage; sets `ctx.principal` as `server.rpc.access.Access` finds it.

A refused caller gets 401 with `WWW-Authenticate: Bearer` (in `ctx.headers`,
which the gateway turns into HTTP headers); an `organization_id` header naming
another organization than the caller's is 403. Which models a key may use is
the router's to enforce (`Principal.allowed_models`).
"""

from __future__ import annotations

from server.pipeline.context import RequestContext, UsageRecord
from server.rpc.access import Access


class AuthStage:
    def __init__(self, access: Access) -> None:
        self._access = access

    async def before(self, ctx: RequestContext) -> None:
        ctx.principal = await self._access.principal(ctx.call)

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        return None
