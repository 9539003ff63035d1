"""Organizations on a `Database`: the tenants keys, usage and data belong to."""

from __future__ import annotations

import time
from collections.abc import Callable

from server.errors import Conflict, NotFound
from server.keys import validate
from server.keys.records import Organization, organization_of
from server.limits.base import Rate
from server.storage.database import Database

_COLUMNS = "id, name, created_at, request_limit, token_limit, limit_window"


class OrganizationStore:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def create(
        self, org_id: str, name: str = "", rate: Rate | None = None, *, exist_ok: bool = False
    ) -> Organization:
        """A new organization; `exist_ok` returns an existing one unchanged instead of 409."""
        org = Organization(
            validate.organization_id(org_id, "id"),
            validate.name(name) or org_id,
            self._clock(),
            validate.rate(rate or Rate()),
        )
        inserted = await self._db.fetchrow(
            f"INSERT INTO organizations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO NOTHING RETURNING id",
            org.id,
            org.name,
            org.created_at,
            org.rate.requests,
            org.rate.tokens,
            org.rate.window,
        )
        if inserted is None:
            if not exist_ok:
                raise Conflict(f"Organization '{org_id}' already exists.", param="id")
            return await self.get(org_id)
        return org

    async def get(self, org_id: str) -> Organization:
        """The organization, or `NotFound` (also for ids that could not be one)."""
        row = await self._db.fetchrow(f"SELECT {_COLUMNS} FROM organizations WHERE id = ?", org_id)
        if row is None:
            raise NotFound(
                f"Unknown organization '{org_id[:64]}'.",
                param="organization_id",
                code="organization_not_found",
            )
        return organization_of(row)

    async def list(self) -> list[Organization]:
        rows = await self._db.fetch(f"SELECT {_COLUMNS} FROM organizations ORDER BY id")
        return [organization_of(r) for r in rows]
