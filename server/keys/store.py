"""API keys on a `Database`: create, list, get, revoke, rotate, verify.

Only the SHA-256 of a secret is stored; `create` and `rotate` return the
secret once. Rotation replaces the secret in place: the key keeps its id,
settings, usage and budget spend, and the old secret stops working at once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from server.errors import InvalidRequest, NotFound, Unauthenticated
from server.keys import secret, validate
from server.keys.orgs import OrganizationStore
from server.keys.records import KeyRecord, KeySpec, key_of
from server.storage.database import Database

_COLUMNS = (
    "id, organization_id, name, handle, prefix, secret_hash, default_model, allowed_models,"
    " request_limit, token_limit, limit_window, budget_usd, spent_usd, expires_at, created_at,"
    " revoked_at, rotated_at, allowed_agents"
)
_SELECT = f"SELECT {_COLUMNS} FROM api_keys"


@dataclass(frozen=True, slots=True)
class Issued:
    """A key with its secret, as shown once at creation or rotation."""

    key: KeyRecord
    secret: str


class KeyStore:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self.organizations = OrganizationStore(db, clock)

    async def create(self, spec: KeySpec, *, create_organization: bool = False) -> Issued:
        now = self._clock()
        validate.spec(spec, now)
        if create_organization:
            await self.organizations.create(spec.organization_id, exist_ok=True)
        else:
            await self.organizations.get(spec.organization_id)
        new = secret.generate()
        record = KeyRecord(
            f"key_{uuid.uuid4().hex[:24]}", spec, new.prefix, now, secret_hash=new.hash
        )
        await self._db.execute(
            f"INSERT INTO api_keys ({_COLUMNS}) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            *_values(record, new.handle),
        )
        return Issued(record, new.secret)

    async def list(self, organization_id: str | None = None) -> list[KeyRecord]:
        if organization_id is None:
            rows = await self._db.fetch(f"{_SELECT} ORDER BY created_at, id")
        else:
            await self.organizations.get(organization_id)
            rows = await self._db.fetch(
                f"{_SELECT} WHERE organization_id = ? ORDER BY created_at, id", organization_id
            )
        return [key_of(r) for r in rows]

    async def get(self, key_id: str) -> KeyRecord:
        row = None
        if validate.is_key_id(key_id):
            row = await self._db.fetchrow(f"{_SELECT} WHERE id = ?", key_id)
        if row is None:
            raise NotFound(
                f"No API key with id '{key_id[:64]}'.", param="key_id", code="key_not_found"
            )
        return key_of(row)

    async def revoke(self, key_id: str) -> KeyRecord:
        await self.get(key_id)
        await self._db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            self._clock(),
            key_id,
        )
        return await self.get(key_id)

    async def rotate(self, key_id: str) -> Issued:
        if (await self.get(key_id)).revoked_at is not None:
            raise InvalidRequest(
                "A revoked key cannot be rotated; create a new one.",
                param="key_id",
                code="key_revoked",
            )
        new = secret.generate()
        await self._db.execute(
            "UPDATE api_keys SET handle = ?, prefix = ?, secret_hash = ?, rotated_at = ?"
            " WHERE id = ?",
            new.handle,
            new.prefix,
            new.hash,
            self._clock(),
            key_id,
        )
        return Issued(await self.get(key_id), new.secret)

    async def verify(self, presented: str) -> KeyRecord:
        """The active key whose secret this is; `Unauthenticated` for anything else."""
        handle = secret.handle_of(presented)
        row = await self._db.fetchrow(f"{_SELECT} WHERE handle = ?", handle) if handle else None
        if row is None or not secret.matches(presented, row["secret_hash"]):
            raise Unauthenticated("Incorrect API key provided.")
        record = key_of(row)
        state = record.state(self._clock())
        if state != "active":
            raise Unauthenticated(f"This API key is {state}.", code=f"{state}_api_key")
        return record

    async def has_keys(self) -> bool:
        """Whether any key exists (none: the server may run open on loopback)."""
        return await self._db.fetchrow("SELECT id FROM api_keys LIMIT 1") is not None


def _values(record: KeyRecord, handle: str) -> tuple[object, ...]:
    spec = record.spec
    models = json.dumps(list(spec.allowed_models)) if spec.allowed_models else None
    return (
        record.id,
        spec.organization_id,
        spec.name,
        handle,
        record.prefix,
        record.secret_hash,
        spec.default_model,
        models,
        spec.rate.requests,
        spec.rate.tokens,
        spec.rate.window,
        spec.budget_usd,
        record.spent_usd,
        spec.expires_at,
        record.created_at,
        None,
        None,
        json.dumps(list(spec.allowed_agents)) if spec.allowed_agents else None,
    )
