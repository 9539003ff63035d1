"""`AuthStage`: the first stage; sets `ctx.principal` through an `Authenticator`.

A refused caller gets 401 with `WWW-Authenticate: Bearer` (in `ctx.headers`,
which the gateway turns into HTTP headers). Whatever the authenticator, an
`organization_id` header naming another organization than the caller's is
403. Which models a key may use is the router's to enforce
(`Principal.allowed_models`).
"""

from __future__ import annotations

from server.errors import PermissionDenied, Unauthenticated
from server.pipeline.context import Authenticator, RequestContext, UsageRecord


class AuthStage:
    def __init__(self, authenticator: Authenticator, realm: str = "tokenwire") -> None:
        self._authenticator = authenticator
        self._challenge = f'Bearer realm="{realm}"'

    async def before(self, ctx: RequestContext) -> None:
        try:
            principal = await self._authenticator.authenticate(ctx.call)
        except Unauthenticated:
            ctx.headers["www-authenticate"] = self._challenge
            raise
        asked = ctx.call.metadata.get("organization_id")
        if asked and principal.organization_id and asked != principal.organization_id:
            raise PermissionDenied(
                "The caller does not belong to the organization in 'organization_id'.",
                param="organization_id",
                code="organization_mismatch",
            )
        ctx.principal = principal

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        return None
