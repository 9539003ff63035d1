"""Validate JSON values against OpenAI's official chat-completion schemas.

The schemas come from `tests/fixtures/openai_schemas.json`, a structure-only
extract of OpenAI's OpenAPI description (MIT, see `openai_schemas.LICENSE`)
committed with the tests, so they run in a fresh clone. Regenerate it with
`python scripts/extract_openai_schemas.py [path/to/openai-openapi.json]`.

    from tests.openai_schema import validate
    validate("CreateChatCompletionResponse", body)  # raises jsonschema.ValidationError
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "openai_schemas.json"
_URI = "urn:tokenwire:openai-schemas"


@cache
def _document() -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{FIXTURE} is missing; run `python scripts/extract_openai_schemas.py`"
        ) from None
    return document


def schema_names() -> list[str]:
    """The names of every schema in the fixture."""
    return sorted(_document()["components"]["schemas"])


def schema(schema_name: str) -> dict[str, Any]:
    """One schema as stored: its `$ref`s point into the fixture."""
    found: dict[str, Any] = _document()["components"]["schemas"][schema_name]
    return found


@cache
def validator(schema_name: str) -> Draft202012Validator:
    """A validator for one named schema; its `#/components/schemas/…` refs resolve."""
    if schema_name not in _document()["components"]["schemas"]:
        raise KeyError(f"no schema {schema_name!r} in {FIXTURE.name}")
    resource = Resource.from_contents(_document(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_URI, resource)
    root = {"$ref": f"{_URI}#/components/schemas/{schema_name}"}
    return Draft202012Validator(root, registry=registry)


def validate(schema_name: str, instance: Any) -> None:
    """Raise `ValidationError` naming the schema and the JSON path when `instance` does not fit."""
    error = best_match(validator(schema_name).iter_errors(instance))
    if error is None:
        return
    raise ValidationError(
        f"{schema_name}: {error.message} at {error.json_path}",
        path=error.path,
        schema_path=error.schema_path,
        context=error.context,
        cause=error.cause,
    )
