"""Extract the OpenAI chat-completion schemas the tests validate against.

Reads OpenAI's OpenAPI description and writes `tests/fixtures/openai_schemas.json`:
the root schemas below and everything they reference, structure only
(descriptions, titles, examples and `x-` annotations dropped), with the
OpenAPI 3.0 `nullable: true` rewritten as `anyOf: [schema, {"type": "null"}]`
so `jsonschema` accepts nulls. References stay `#/components/schemas/X`, so
the fixture is itself a small OpenAPI document that resolves them.

Usage: python scripts/extract_openai_schemas.py [SPEC] [--out PATH] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "reference" / "openai-openapi.json"
OUT = ROOT / "tests" / "fixtures" / "openai_schemas.json"
ROOTS = (
    "CreateChatCompletionRequest",
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "ErrorResponse",
    "ListModelsResponse",
    "Model",
)
REF_PREFIX = "#/components/schemas/"

Schema = dict[str, Any]

# Keywords whose value is a schema, a list of schemas, or a map of names to schemas.
_ONE = frozenset(
    {
        "items",
        "additionalProperties",
        "not",
        "if",
        "then",
        "else",
        "contains",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
        "additionalItems",
    }
)
_MANY = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_NAMED = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# Annotations that change nothing about which instances validate.
_DROPPED = frozenset({"description", "title", "example", "examples", "externalDocs"})


def clean(schema: Any) -> Any:
    """One schema, structure only, with `nullable` rewritten for JSON Schema."""
    if not isinstance(schema, dict):
        return schema  # boolean schemas
    out: Schema = {}
    for key, value in schema.items():
        if key in _DROPPED or key.startswith("x-"):
            continue
        out[key] = _clean_keyword(key, value)
    if out.pop("nullable", False):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _clean_keyword(key: str, value: Any) -> Any:
    if key in _ONE:
        return [clean(v) for v in value] if isinstance(value, list) else clean(value)
    if key in _MANY:
        return [clean(v) for v in value]
    if key in _NAMED:
        return {name: clean(v) for name, v in value.items()}
    return value  # data: enum, const, default, required, discriminator, …


def refs(value: Any) -> Iterator[str]:
    """Every `$ref` string inside a JSON value."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str):
            yield ref
        for v in value.values():
            yield from refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from refs(v)


def extract(spec: dict[str, Any], roots: tuple[str, ...] = ROOTS) -> dict[str, Any]:
    """The fixture document: the roots and their transitive references."""
    source = spec["components"]["schemas"]
    schemas: dict[str, Schema] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in schemas:
            continue
        schemas[name] = clean(source[name])
        for ref in refs(schemas[name]):
            if not ref.startswith(REF_PREFIX):
                raise ValueError(f"{name}: unsupported $ref {ref!r}")
            pending.append(ref[len(REF_PREFIX) :])
    return {
        "openapi": spec["openapi"],
        "info": {
            "title": f"{spec['info']['title']} (chat completion schemas, structure only)",
            "version": spec["info"]["version"],
        },
        "components": {"schemas": schemas},
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", type=Path, default=SPEC, help="openai-openapi.json")
    parser.add_argument("--out", type=Path, default=OUT, help="fixture to write")
    parser.add_argument("--check", action="store_true", help="fail if the fixture is stale")
    args = parser.parse_args(argv)
    text = render(extract(json.loads(args.spec.read_text(encoding="utf-8"))))
    if args.check:
        fresh = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if fresh else 'STALE'}")
        return 0 if fresh else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    count = text.count('"$ref"')
    print(f"wrote {args.out} ({len(text)} bytes, {count} references)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
