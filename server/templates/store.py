"""Templates and their versions on `Database`, always within one organization.

    templates          id (UUID), organization_id, name (unique in the org),
                       version (the latest), created_at
    template_versions  template_id, version, description, messages, variables,
                       model, parameters (JSON text), created_at

The versioned-record SQL (names, versions, renames, paging, isolation) is
`server/storage/versioned.py`'s; this module says how a template's fields go
into the version's columns and come back.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from server.storage.database import Row
from server.storage.migrations import Migration
from server.storage.versioned import Kind, VersionedStore
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


def _columns(t: Template) -> tuple[Any, ...]:
    return (
        t.description or None,
        _dumps(list(t.messages)),
        _dumps(list(t.variables)),
        t.model or None,
        json.dumps(_dict(t.parameters)),
    )


def _template(row: Row) -> Template:
    t = Template()
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


KIND = Kind(
    noun="template",
    table="templates",
    message=Template,
    columns=("description", "messages", "variables", "model", "parameters"),
    to_columns=_columns,
    from_columns=_template,
    validate=validate.template,
)


class TemplateStore(VersionedStore[Template]):
    kind = KIND


def _dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _dumps(messages: list[Any]) -> str:
    return json.dumps([_dict(m) for m in messages])
