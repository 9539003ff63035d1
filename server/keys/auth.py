"""Who is calling: an API key (`KeyAuthenticator`) or the admin (`AdminCredential`).

Both read `authorization: Bearer <token>` from the call's metadata.

    no or malformed header, unknown key      401 invalid_api_key
    revoked key / expired key                401 revoked_api_key / expired_api_key
    `organization_id` not the key's          403 organization_mismatch
    admin API without an admin token set     403 admin_disabled
"""

from __future__ import annotations

import hashlib
import hmac

from server.errors import PermissionDenied, Unauthenticated
from server.keys.secret import MAX_LENGTH
from server.keys.store import KeyStore
from server.pipeline.context import CallInfo, Principal

MIN_ADMIN_TOKEN = 16


def bearer(call: CallInfo) -> str:
    """The bearer token of the call; `Unauthenticated` when there is none."""
    header = call.metadata.get("authorization", "")
    if not header:
        raise Unauthenticated(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
        )
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_LENGTH:
        raise Unauthenticated("Malformed Authorization header: use 'Bearer <key>'.")
    return token


class KeyAuthenticator:
    """An `Authenticator` over the key store; the tenancy header must match the key."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    async def authenticate(self, call: CallInfo) -> Principal:
        record = await self._store.verify(bearer(call))
        asked = call.metadata.get("organization_id")
        if asked and asked != record.organization_id:
            raise PermissionDenied(
                "This API key does not belong to the organization in 'organization_id'.",
                param="organization_id",
                code="organization_mismatch",
            )
        spec = record.spec
        return Principal(
            key_id=record.id,
            organization_id=record.organization_id,
            default_model=spec.default_model,
            allowed_models=frozenset(spec.allowed_models) or None,
            allowed_agents=frozenset(spec.allowed_agents) or None,
        )


class AdminCredential:
    """The admin token; None disables the admin API."""

    def __init__(self, token: str | None) -> None:
        if token is not None and len(token) < MIN_ADMIN_TOKEN:
            raise ValueError(f"the admin token must be at least {MIN_ADMIN_TOKEN} characters")
        self._digest = _digest(token) if token else None

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    def matches(self, call: CallInfo) -> bool:
        """Whether the call carries the admin token (constant-time)."""
        header = call.metadata.get("authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if self._digest is None or scheme.lower() != "bearer" or len(token) > MAX_LENGTH:
            return False
        return hmac.compare_digest(_digest(token.strip()), self._digest)

    def check(self, call: CallInfo) -> None:
        if self._digest is None:
            raise PermissionDenied(
                "The admin API is disabled: configure an admin token.", code="admin_disabled"
            )
        bearer(call)
        if not self.matches(call):
            raise Unauthenticated("Incorrect admin credential.", code="invalid_admin_credential")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
