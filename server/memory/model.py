"""The plain data of organization memory, free of protobuf and SQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["api", "auto"]


@dataclass(frozen=True, slots=True)
class Memory:
    """One memory; `user`/`session_id` narrow it to those requests (None: all of the org)."""

    id: str
    organization_id: str
    content: str
    user: str | None
    session_id: str | None
    created_at: float
    source: Source


@dataclass(frozen=True, slots=True)
class Scope:
    """What a search may see: the organization's memories that are org-wide or
    narrowed to this `user` or this `session_id` (never another's)."""

    organization_id: str
    user: str | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Scored:
    """A search result: higher `score` is more relevant."""

    memory: Memory
    score: float


@dataclass(frozen=True, slots=True)
class Settings:
    """An organization's memory settings."""

    auto_store: bool = False
