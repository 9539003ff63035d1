"""Organizations and API keys as the stores hand them out (plain frozen values)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from server.limits.base import Rate
from server.storage.database import Row

KeyState = Literal["active", "revoked", "expired"]


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    created_at: float
    rate: Rate = field(default_factory=Rate)


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What a new key is created with (rotation keeps all of it)."""

    organization_id: str
    name: str = ""
    default_model: str | None = None
    allowed_models: tuple[str, ...] = ()  # empty: any model
    allowed_agents: tuple[str, ...] = ()  # empty: any agent (server/agents)
    rate: Rate = field(default_factory=Rate)
    budget_usd: float | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    spec: KeySpec
    prefix: str
    created_at: float
    spent_usd: float = 0.0
    revoked_at: float | None = None
    rotated_at: float | None = None
    secret_hash: str = field(default="", repr=False)

    @property
    def organization_id(self) -> str:
        return self.spec.organization_id

    def state(self, now: float) -> KeyState:
        if self.revoked_at is not None:
            return "revoked"
        if self.spec.expires_at is not None and self.spec.expires_at <= now:
            return "expired"
        return "active"


def rate_of(row: Row, prefix: str = "") -> Rate:
    return Rate(
        requests=row[f"{prefix}request_limit"],
        tokens=row[f"{prefix}token_limit"],
        window=int(row[f"{prefix}limit_window"]),
    )


def organization_of(row: Row) -> Organization:
    return Organization(row["id"], row["name"], float(row["created_at"]), rate_of(row))


def key_of(row: Row) -> KeyRecord:
    models = json.loads(row["allowed_models"]) if row["allowed_models"] else []
    spec = KeySpec(
        organization_id=row["organization_id"],
        name=row["name"],
        default_model=row["default_model"],
        allowed_models=tuple(models),
        allowed_agents=tuple(json.loads(row["allowed_agents"] or "[]")),
        rate=rate_of(row),
        budget_usd=row["budget_usd"],
        expires_at=row["expires_at"],
    )
    return KeyRecord(
        id=row["id"],
        spec=spec,
        prefix=row["prefix"],
        created_at=float(row["created_at"]),
        spent_usd=float(row["spent_usd"]),
        revoked_at=row["revoked_at"],
        rotated_at=row["rotated_at"],
        secret_hash=row["secret_hash"],
    )
