"""The rate limits of a key and of its organization, as `LimitStage` checks them."""

from __future__ import annotations

from collections.abc import Sequence

from server.keys.records import rate_of
from server.limits.base import Check
from server.pipeline.context import Principal
from server.storage.database import Database

_LIMITS = "request_limit, token_limit, limit_window"


class KeyQuotas:
    """A `QuotaSource`: one query per request, so limits changed in the store apply at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def checks(self, principal: Principal) -> Sequence[Check]:
        checks: list[Check] = []
        if principal.key_id is not None:
            row = await self._db.fetchrow(
                f"SELECT {_LIMITS} FROM api_keys WHERE id = ?", principal.key_id
            )
            if row is not None:
                checks.append(Check(f"key:{principal.key_id}", "this API key", rate_of(row)))
        org = principal.organization_id
        if org is not None:
            row = await self._db.fetchrow(f"SELECT {_LIMITS} FROM organizations WHERE id = ?", org)
            if row is not None:
                checks.append(Check(f"org:{org}", "your organization", rate_of(row)))
        return checks
