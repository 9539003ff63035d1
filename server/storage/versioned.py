"""Named, versioned records of an organization (templates, agents): the SQL they share.

Each kind keeps two tables, created by its own migration:

    <table>           id (UUID), organization_id, name (unique in the org),
                      version (the latest), created_at
    <noun>_versions   <noun>_id, version, the kind's own columns, created_at

A `Kind` says only what differs: its tables, the columns of a version and how a
message goes into and comes out of them, its validation. `VersionedStore` does
the rest. Every query names the organization, so another organization's record
is never found, whatever id or name is asked for. An update takes the row lock
first (`UPDATE … version + 1`), so concurrent updates never build on the same
version; the earlier versions stay readable.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

from google.protobuf.message import Message

from server.errors import Conflict, NotFound
from server.rpc.updates import masked, merge, writable
from server.storage.database import Database, Row

M = TypeVar("M", bound=Message)
MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class Kind(Generic[M]):
    """What one kind of versioned record has of its own."""

    noun: str  # `template`: names the versions table, `object`, errors' param and code
    table: str  # `templates`
    message: type[M]
    columns: tuple[str, ...]  # the versions table's own columns, in `to_columns`' order
    to_columns: Callable[[M], tuple[Any, ...]]
    from_columns: Callable[[Row], M]  # the message from a row's own columns
    validate: Callable[[M], None]

    @property
    def maskable(self) -> tuple[str, ...]:
        """The fields an update mask may name: all a client writes."""
        return writable(self.message)


def ref_clause(ref: str, alias: str) -> tuple[str, str]:
    """The WHERE clause finding a record by UUID (any spelling) or by name."""
    try:
        return f"{alias}.id = ?", str(uuid.UUID(ref))
    except ValueError:
        return f"{alias}.name = ?", ref


class VersionedStore(Generic[M]):
    """A subclass names its `kind`."""

    kind: Kind[M]

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        kind = self.kind
        own = ", ".join(f"v.{c}" for c in kind.columns)
        self._select = (
            f"SELECT h.id, h.name, h.created_at, v.version, {own}, v.created_at AS updated_at"
            f" FROM {kind.table} h JOIN {kind.noun}_versions v ON v.{kind.noun}_id = h.id"
        )

    async def create(self, organization_id: str, record: M) -> M:
        """Store version 1 of a new record; 409 when its name is taken."""
        self.kind.validate(record)
        record_id, now, name = str(uuid.uuid4()), self._clock(), _name(record)
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(
                f"INSERT INTO {self.kind.table} (id, organization_id, name, version, created_at)"
                " VALUES (?, ?, ?, 1, ?) ON CONFLICT (organization_id, name) DO NOTHING"
                " RETURNING id",
                record_id,
                organization_id,
                name,
                now,
            )
            if row is None:
                raise self.taken(name)
            await self._insert_version(tx, record_id, 1, record, now)
            return await self._load(tx, record_id, 1)

    async def get(self, organization_id: str, ref: str, version: int | None = None) -> M:
        """The latest version (or `version`) of the record named or identified by `ref`."""
        clause, value = ref_clause(ref, "h")
        wanted = "v.version = ?" if version is not None else "v.version = h.version"
        args: list[Any] = [organization_id, value, *([version] if version is not None else [])]
        row = await self.db.fetchrow(
            f"{self._select} WHERE h.organization_id = ? AND {clause} AND {wanted}", *args
        )
        if row is None:
            raise self.not_found(ref, version)
        return self._record(row)

    async def page(
        self, organization_id: str, limit: int = 20, after: str | None = None
    ) -> tuple[list[M], bool]:
        """A page of records by name, each at its latest version, and whether more follow."""
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self.db.fetch(
            f"{self._select} WHERE h.organization_id = ? AND v.version = h.version"
            " AND h.name > ? ORDER BY h.name LIMIT ?",
            organization_id,
            after or "",
            limit + 1,
        )
        return [self._record(r) for r in rows[:limit]], len(rows) > limit

    async def update(
        self, organization_id: str, ref: str, changes: M, mask: Sequence[str] = ()
    ) -> M:
        """Write the next version: the latest with `changes` applied (only `mask`'s, if any)."""
        clause, value = ref_clause(ref, self.kind.table)
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(
                f"UPDATE {self.kind.table} SET version = version + 1"
                f" WHERE organization_id = ? AND {clause} RETURNING id, version",
                organization_id,
                value,
            )
            if row is None:
                raise self.not_found(ref)
            record_id, version = row["id"], row["version"]
            current = await self._load(tx, record_id, version - 1)
            merged = masked(current, changes, mask) if mask else merge(current, changes)
            self.kind.validate(merged)
            if _name(merged) != _name(current):
                await self._rename(tx, organization_id, record_id, _name(merged))
            await self._insert_version(tx, record_id, version, merged, self._clock())
            return await self._load(tx, record_id, version)

    async def delete(self, organization_id: str, ref: str) -> str:
        """Delete the record with all its versions; returns its id."""
        clause, value = ref_clause(ref, "h")
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(
                f"SELECT h.id FROM {self.kind.table} h WHERE h.organization_id = ? AND {clause}",
                organization_id,
                value,
            )
            if row is None:
                raise self.not_found(ref)
            noun = self.kind.noun
            await tx.execute(f"DELETE FROM {noun}_versions WHERE {noun}_id = ?", row["id"])
            await tx.execute(
                f"DELETE FROM {self.kind.table} WHERE id = ? AND organization_id = ?",
                row["id"],
                organization_id,
            )
            return str(row["id"])

    def not_found(self, ref: str, version: int | None = None) -> NotFound:
        noun = self.kind.noun
        which = f"{noun.capitalize()} '{ref}'" + (
            f" version {version}" if version is not None else ""
        )
        return NotFound(f"{which} was not found.", param=noun, code=f"{noun}_not_found")

    def taken(self, name: str) -> Conflict:
        noun = self.kind.noun
        article = "An" if noun[0] in "aeiou" else "A"
        return Conflict(
            f"{article} {noun} named '{name}' already exists in this organization.", param="name"
        )

    async def _rename(self, db: Database, organization_id: str, record_id: str, name: str) -> None:
        table = self.kind.table
        taken = await db.fetchrow(
            f"SELECT id FROM {table} WHERE organization_id = ? AND name = ?", organization_id, name
        )
        if taken is not None:
            raise self.taken(name)
        await db.execute(f"UPDATE {table} SET name = ? WHERE id = ?", name, record_id)

    async def _insert_version(
        self, db: Database, record_id: str, version: int, record: M, now: float
    ) -> None:
        noun, columns = self.kind.noun, self.kind.columns
        marks = ", ".join("?" for _ in range(len(columns) + 3))
        await db.execute(
            f"INSERT INTO {noun}_versions ({noun}_id, version, {', '.join(columns)}, created_at)"
            f" VALUES ({marks})",
            record_id,
            version,
            *self.kind.to_columns(record),
            now,
        )

    async def _load(self, db: Database, record_id: str, version: int) -> M:
        """A version known to exist: read in the transaction that wrote or locked it."""
        row = await db.fetchrow(
            f"{self._select} WHERE h.id = ? AND v.version = ?", record_id, version
        )
        if row is None:
            raise self.not_found(record_id, version)
        return self._record(row)

    def _record(self, row: Row) -> M:
        record = self.kind.from_columns(row)
        for field, value in (
            ("id", row["id"]),
            ("object", self.kind.noun),
            ("name", row["name"]),
            ("version", row["version"]),
            ("created_at", int(row["created_at"])),
            ("updated_at", int(row["updated_at"])),
        ):
            setattr(record, field, value)  # by name: `Message` declares none of them
        return record


class _Named(Protocol):
    name: str


def _name(record: Message) -> str:
    return cast(_Named, record).name  # every kind has a `name`; `Message` does not declare it
