"""Templates and their versions on `Database`, always within one organization.

    templates          id (UUID), organization_id, name (unique in the org),
                       version (the latest), created_at
    template_versions  template_id, version, description, messages, variables,
                       model, parameters (JSON text), created_at

Every query names the organization, so a template of another organization
is never found, whatever id or name is asked for. An update writes a new
version under a row lock taken first (`UPDATE … version + 1`), so concurrent
updates never build on the same version.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from server.errors import Conflict, InvalidRequest, NotFound
from server.rpc.updates import merge
from server.storage.database import Database, Row
from server.storage.migrations import Migration
from server.templates import validate
from tokenwire.templates.v1 import templates_pb2

Template = templates_pb2.Template

MIGRATIONS = (
    Migration(
        "templates",
        1,
        "CREATE TABLE templates ("
        " id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, name TEXT NOT NULL,"
        " version INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL,"
        " UNIQUE (organization_id, name));\n"
        "CREATE TABLE template_versions ("
        " template_id TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,"
        " version INTEGER NOT NULL, description TEXT, messages TEXT NOT NULL,"
        " variables TEXT NOT NULL, model TEXT, parameters TEXT NOT NULL,"
        " created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (template_id, version))",
    ),
)

_SELECT = (
    "SELECT t.id, t.name, t.created_at, v.version, v.description, v.messages, v.variables,"
    " v.model, v.parameters, v.created_at AS updated_at"
    " FROM templates t JOIN template_versions v ON v.template_id = t.id"
)
MAX_PAGE = 100


def ref_clause(ref: str, table: str = "t") -> tuple[str, str]:
    """The WHERE clause finding a template by UUID (any spelling) or by name."""
    try:
        return f"{table}.id = ?", str(uuid.UUID(ref))
    except ValueError:
        return f"{table}.name = ?", ref


def not_found(ref: str, version: int | None = None) -> NotFound:
    which = f"Template '{ref}'" + (f" version {version}" if version is not None else "")
    return NotFound(f"{which} was not found.", param="template", code="template_not_found")


class TemplateStore:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    async def create(self, organization_id: str, template: Template) -> Template:
        """Store version 1 of a new template; 409 when its name is taken."""
        validate.template(template)
        template_id, now = str(uuid.uuid4()), self._clock()
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(
                "INSERT INTO templates (id, organization_id, name, version, created_at)"
                " VALUES (?, ?, ?, 1, ?) ON CONFLICT (organization_id, name) DO NOTHING"
                " RETURNING id",
                template_id,
                organization_id,
                template.name,
                now,
            )
            if row is None:
                raise _taken(template.name)
            await _insert_version(tx, template_id, 1, template, now)
            return await _load(tx, organization_id, template_id, 1)

    async def get(self, organization_id: str, ref: str, version: int | None = None) -> Template:
        """The latest version (or `version`) of the template named or identified by `ref`."""
        clause, value = ref_clause(ref)
        wanted = "v.version = ?" if version is not None else "v.version = t.version"
        args: list[Any] = [organization_id, value, *([version] if version is not None else [])]
        row = await self.db.fetchrow(
            f"{_SELECT} WHERE t.organization_id = ? AND {clause} AND {wanted}", *args
        )
        if row is None:
            raise not_found(ref, version)
        return _template(row)

    async def page(
        self, organization_id: str, limit: int = 20, after: str | None = None
    ) -> tuple[list[Template], bool]:
        """A page of templates by name, each at its latest version, and whether more follow."""
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self.db.fetch(
            f"{_SELECT} WHERE t.organization_id = ? AND v.version = t.version AND t.name > ?"
            " ORDER BY t.name LIMIT ?",
            organization_id,
            after or "",
            limit + 1,
        )
        return [_template(r) for r in rows[:limit]], len(rows) > limit

    async def update(
        self, organization_id: str, ref: str, changes: Template, mask: Sequence[str] = ()
    ) -> Template:
        """Write the next version: the latest with `changes` applied (only `mask`'s, if any)."""
        clause, value = ref_clause(ref, "templates")
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(
                "UPDATE templates SET version = version + 1"
                f" WHERE organization_id = ? AND {clause} RETURNING id, version",
                organization_id,
                value,
            )
            if row is None:
                raise not_found(ref)
            template_id, version = row["id"], row["version"]
            current = await _load(tx, organization_id, template_id, version - 1)
            merged = masked(current, changes, mask) if mask else merge(current, changes)
            validate.template(merged)
            if merged.name != current.name:
                await _rename(tx, organization_id, template_id, merged.name)
            await _insert_version(tx, template_id, version, merged, self._clock())
            return await _load(tx, organization_id, template_id, version)

    async def delete(self, organization_id: str, ref: str) -> str:
        """Delete the template with all its versions; returns its id."""
        clause, value = ref_clause(ref)
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(
                f"SELECT t.id FROM templates t WHERE t.organization_id = ? AND {clause}",
                organization_id,
                value,
            )
            if row is None:
                raise not_found(ref)
            await tx.execute("DELETE FROM template_versions WHERE template_id = ?", row["id"])
            await tx.execute(
                "DELETE FROM templates WHERE id = ? AND organization_id = ?",
                row["id"],
                organization_id,
            )
            return str(row["id"])


# The fields an update mask may name: what a template's author writes.
MASKABLE = ("name", "description", "messages", "variables", "model", "parameters")


def masked(current: Template, changes: Template, mask: Sequence[str]) -> Template:
    """`current` with each field `mask` names taken from `changes`, unset or empty included."""
    out = Template()
    out.CopyFrom(current)
    target: Message = out  # by name: the generated stubs type field names as literals
    source: Message = changes
    for path in mask:
        if path not in MASKABLE:
            raise InvalidRequest(
                f"'update_mask' names '{path}'; it takes {', '.join(MASKABLE)}.",
                param="update_mask",
            )
        target.ClearField(path)
        field = Template.DESCRIPTOR.fields_by_name[path]
        if field.is_repeated:
            getattr(target, path).extend(getattr(source, path))
        elif field.message_type is not None:
            if source.HasField(path):
                getattr(target, path).CopyFrom(getattr(source, path))
        elif not field.has_presence or source.HasField(path):
            setattr(target, path, getattr(source, path))
    return out


def _taken(name: str) -> Conflict:
    return Conflict(f"A template named '{name}' already exists in this organization.", param="name")


async def _rename(db: Database, organization_id: str, template_id: str, name: str) -> None:
    taken = await db.fetchrow(
        "SELECT id FROM templates WHERE organization_id = ? AND name = ?", organization_id, name
    )
    if taken is not None:
        raise _taken(name)
    await db.execute("UPDATE templates SET name = ? WHERE id = ?", name, template_id)


async def _insert_version(
    db: Database, template_id: str, version: int, t: Template, now: float
) -> None:
    await db.execute(
        "INSERT INTO template_versions (template_id, version, description, messages,"
        " variables, model, parameters, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        template_id,
        version,
        t.description or None,
        _dumps(list(t.messages)),
        _dumps(list(t.variables)),
        t.model or None,
        json.dumps(_dict(t.parameters)),
        now,
    )


async def _load(db: Database, organization_id: str, template_id: str, version: int) -> Template:
    row = await db.fetchrow(
        f"{_SELECT} WHERE t.organization_id = ? AND t.id = ? AND v.version = ?",
        organization_id,
        template_id,
        version,
    )
    if row is None:
        raise not_found(template_id)
    return _template(row)


def _dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _dumps(messages: list[Any]) -> str:
    return json.dumps([_dict(m) for m in messages])


def _template(row: Row) -> Template:
    t = Template(
        id=row["id"],
        object="template",
        name=row["name"],
        version=row["version"],
        created_at=int(row["created_at"]),
        updated_at=int(row["updated_at"]),
    )
    for item in json.loads(row["messages"]):
        json_format.ParseDict(item, t.messages.add())
    for item in json.loads(row["variables"]):
        json_format.ParseDict(item, t.variables.add())
    if row["description"] is not None:
        t.description = row["description"]
    if row["model"] is not None:
        t.model = row["model"]
    json_format.ParseDict(json.loads(row["parameters"]), t.parameters)
    return t
