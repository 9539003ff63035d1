"""An OpenAPI 3.1 document of the REST face, derived from the routes and descriptors.

Schemas follow the same rendering rules as `gateway.transcode`, so the
document describes exactly the JSON the gateway accepts and returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.routes import Route
from gateway.transcode import Field, enum_names, message_type, plan

Schema = dict[str, Any]

_SCALARS: dict[int, Schema] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}


def document(routes: Iterable[Route]) -> dict[str, Any]:
    schemas: dict[str, Schema] = {}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = _openapi_path(route)
        paths.setdefault(path, {})
        operation = _operation(route, schemas)
        existing = paths[path].get(route.verb.lower())
        paths[path][route.verb.lower()] = _merge(existing, operation) if existing else operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "tokenwire", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _openapi_path(route: Route) -> str:
    path = route.template
    for name in route.variables:
        start = path.index("{" + name)
        path = path[:start] + "{" + name + "}" + path[path.index("}", start) + 1 :]
    return path


def _operation(route: Route, schemas: dict[str, Schema]) -> dict[str, Any]:
    method = route.method
    output: Descriptor = method.output_type
    if route.response_body:
        output = message_type(output.fields_by_name[route.response_body])
    media = "text/event-stream" if route.streaming else "application/json"
    op: dict[str, Any] = {
        "operationId": method.name,
        "responses": {
            "200": {"description": "OK", "content": {media: {"schema": _ref(output, schemas)}}},
            "default": {
                "description": "Error",
                "content": {"application/json": {"schema": _error()}},
            },
        },
        "parameters": [
            {"name": v, "in": "path", "required": True, "schema": {"type": "string"}}
            for v in route.variables
        ],
    }
    if route.body:
        body_type: Descriptor = method.input_type
        if route.body != "*":
            body_type = message_type(body_type.fields_by_name[route.body])
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body_type, schemas)}},
        }
    return op


def _merge(unary: dict[str, Any], streaming: dict[str, Any]) -> dict[str, Any]:
    """One operation for a unary and a streaming RPC sharing a route."""
    merged = dict(unary)
    merged["responses"] = dict(unary["responses"])
    merged["responses"]["200"] = {
        "description": "A JSON object, or Server-Sent Events when `stream` is true",
        "content": {
            **unary["responses"]["200"]["content"],
            **streaming["responses"]["200"]["content"],
        },
    }
    return merged


def _error() -> Schema:
    fields = {k: {"type": ["string", "null"]} for k in ("type", "param", "code")}
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {"message": {"type": "string"}, **fields},
            }
        },
    }


def _ref(desc: Descriptor, schemas: dict[str, Schema]) -> Schema:
    name = desc.full_name
    if name not in schemas:
        schemas[name] = {}  # placeholder first: messages may refer to themselves
        schemas[name] = _message_schema(desc, schemas)
    return {"$ref": f"#/components/schemas/{name}"}


def _message_schema(desc: Descriptor, schemas: dict[str, Schema]) -> Schema:
    p = plan(desc)
    if p.unwrap is not None:
        return _field_schema(p.unwrap, schemas)
    props: dict[str, Schema] = {}
    for key, fields in p.by_key.items():
        # null means unset on input, as in OpenAI's API; fields sharing a key are alternatives
        props[key] = {"anyOf": [*(_field_schema(f, schemas) for f in fields), {"type": "null"}]}
    return {"type": "object", "properties": props, "additionalProperties": False}


def _field_schema(f: Field, schemas: dict[str, Schema]) -> Schema:
    if f.map_value is not None:
        return {"type": "object", "additionalProperties": _single(f.map_value, schemas)}
    one = _single(f, schemas)
    if f.repeated:
        many: Schema = {"type": "array", "items": one}
        return {"oneOf": [one, many]} if f.scalar_or_list else many
    return one


def _single(f: Field, schemas: dict[str, Schema]) -> Schema:
    t = f.fd.type
    if f.raw:
        return {}
    if t == FieldDescriptor.TYPE_MESSAGE:
        return _ref(message_type(f.fd), schemas)
    if t == FieldDescriptor.TYPE_ENUM:
        return {"type": "string", "enum": list(enum_names(f.fd.enum_type).by_name)}
    return _SCALARS.get(t, {"type": "integer"})
