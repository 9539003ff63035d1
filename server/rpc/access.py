"""Who is calling, asked the same way by every servicer and by the chat pipeline's first stage.

`principal` authenticates through the injected `Authenticator` (API keys, or
the `organization_id` header when running open); a refused caller's 401 carries
`WWW-Authenticate`, and an `organization_id` header naming another organization
than the caller's is 403. `organization` is the principal's organization, or a
400 (`organization_required`) for services whose data belongs to one
(templates, memories). `admin` admits the admin credential only.
"""

from __future__ import annotations

from typing import Protocol

from server.errors import InvalidRequest, PermissionDenied, Unauthenticated
from server.pipeline.context import Authenticator, CallInfo, Principal

CHALLENGE = 'Bearer realm="tokenwire"'
ADMIN_CHALLENGE = 'Bearer realm="tokenwire-admin"'


class AdminCheck(Protocol):
    def matches(self, call: CallInfo) -> bool:
        """Whether the call carries the admin credential."""
        ...

    def check(self, call: CallInfo) -> None:
        """Raise `Unauthenticated`/`PermissionDenied` unless the call is the admin's."""
        ...


class Access:
    def __init__(self, authenticator: Authenticator, admin: AdminCheck) -> None:
        self._authenticator = authenticator
        self._admin = admin

    async def principal(self, call: CallInfo) -> Principal:
        try:
            principal = await self._authenticator.authenticate(call)
        except Unauthenticated:
            call.headers["www-authenticate"] = CHALLENGE
            raise
        asked = call.metadata.get("organization_id")
        if asked and principal.organization_id and asked != principal.organization_id:
            raise PermissionDenied(
                "The caller does not belong to the organization in 'organization_id'.",
                param="organization_id",
                code="organization_mismatch",
            )
        return principal

    async def organization(self, call: CallInfo) -> str:
        """The caller's organization, or a 400 saying how to name one."""
        return organization_of(await self.principal(call))

    def is_admin(self, call: CallInfo) -> bool:
        return self._admin.matches(call)

    def admin(self, call: CallInfo) -> None:
        try:
            self._admin.check(call)
        except Unauthenticated:
            call.headers["www-authenticate"] = ADMIN_CHALLENGE
            raise


def organization_of(principal: Principal) -> str:
    """The principal's organization, or a 400 saying how to name one."""
    if not principal.organization_id:
        raise InvalidRequest(
            "This call needs an organization: send the `organization_id` header "
            "or use an API key that belongs to an organization.",
            code="organization_required",
        )
    return principal.organization_id
