"""An OpenAPI 3.1 document of the REST face, derived from the routes and descriptors.

Schemas follow the same rendering rules as `gateway.transcode` and carry the
contract's annotations (`gateway.json_schema`), so the document describes
exactly the JSON the gateway accepts and returns. Each operation's security
is its service's `tokenwire.options.v1.access`; query parameters are the
request's scalar fields not bound from the path or the body.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import Descriptor

from gateway.json_schema import Schema, field_schema, ref
from gateway.routes import Route
from gateway.transcode import FIELD_MASK, Field, message_type, plan
from tokenwire.options.v1 import schema_pb2

_ACCESS: Any = schema_pb2.access  # its stubs type it as a plain descriptor
_SCHEMES: dict[int, tuple[str, Schema]] = {
    schema_pb2.CREDENTIAL_API_KEY: (
        "apiKey",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key of an organization. Once any key exists, every call "
            "but the admin API's needs one.",
        },
    ),
    schema_pb2.CREDENTIAL_ORGANIZATION: (
        "organization",
        {
            "type": "apiKey",
            "in": "header",
            "name": "organization_id",
            "description": "The organization whose data the call reads and writes, on a "
            "service without API keys (a key implies its organization).",
        },
    ),
    schema_pb2.CREDENTIAL_ADMIN_TOKEN: (
        "adminToken",
        {"type": "http", "scheme": "bearer", "description": "The admin token."},
    ),
}
_HTTP_BODY = "google.api.HttpBody"


def document(routes: Iterable[Route]) -> dict[str, Any]:
    schemas: dict[str, Schema] = {}
    paths: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    ids: dict[Route, str] = {}
    for route in routes:
        path = _openapi_path(route)
        paths.setdefault(path, {})
        existing = paths[path].get(route.verb.lower())
        if existing:
            operation = _merge(existing, _operation(route, schemas, existing["operationId"]))
        else:
            operation = _operation(route, schemas, _operation_id(route, used))
        paths[path][route.verb.lower()] = operation
        ids[route] = operation["operationId"]
    for route, links in _links(ids).items():
        paths[_openapi_path(route)][route.verb.lower()]["responses"]["200"]["links"] = links
    return {
        "openapi": "3.1.0",
        "info": {"title": "tokenwire", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {name: scheme for name, scheme in _SCHEMES.values()},
        },
    }


def _operation_id(route: Route, used: set[str]) -> str:
    """The RPC's name; an additional binding of it gets a number (ids must be unique)."""
    name, n = route.method.name, 1
    while (candidate := name if n == 1 else f"{name}{n}") in used:
        n += 1
    used.add(candidate)
    return candidate


def _links(ids: dict[Route, str]) -> dict[Route, dict[str, Any]]:
    """From each create (a POST to a collection answering a resource with an `id`) to the
    operations on one member of that collection (`/v1/templates` -> `/v1/templates/{template}`),
    so a client (or a fuzzer's stateful phase) can follow the id it was given."""
    out: dict[Route, dict[str, Any]] = {}
    for create in ids:
        pointer = _id_pointer(create)
        if create.verb != "POST" or create.variables or create.streaming or not pointer:
            continue
        targets = {
            ids[r]: {"operationId": ids[r], "parameters": {r.variables[0]: pointer}}
            for r in ids
            if len(r.variables) == 1 and r.template.startswith(create.template + "/")
        }
        if targets:
            out[create] = targets
    return out


def _id_pointer(route: Route) -> str:
    """`$response.body#/id` (or `#/key/id` for a resource in a field) of what `route` answers."""
    output: Descriptor = route.method.output_type
    if route.response_body:
        output = message_type(output.fields_by_name[route.response_body])
    if "id" in output.fields_by_name:
        return "$response.body#/id"
    for f in plan(output).by_name.values():
        if f.is_message and not f.repeated and "id" in message_type(f.fd).fields_by_name:
            return f"$response.body#/{f.key}/id"
    return ""


def _openapi_path(route: Route) -> str:
    path = route.template
    for name in route.variables:
        start = path.index("{" + name)
        path = path[:start] + "{" + name + "}" + path[path.index("}", start) + 1 :]
    return path


def _operation(route: Route, schemas: dict[str, Schema], operation_id: str) -> dict[str, Any]:
    method = route.method
    output: Descriptor = method.output_type
    if route.response_body:
        output = message_type(output.fields_by_name[route.response_body])
    op: dict[str, Any] = {
        "operationId": operation_id,
        "responses": {
            "200": {"description": "OK", "content": _content(output, route.streaming, schemas)},
            "default": {
                "description": "Error",
                "content": {"application/json": {"schema": _error()}},
            },
        },
        "parameters": [
            *(
                {"name": v, "in": "path", "required": True, "schema": _path_schema(route, v)}
                for v in route.variables
            ),
            *_query_parameters(route, schemas),
        ],
        "security": _security(route),
    }
    if route.body:
        body_type: Descriptor = method.input_type
        if route.body != "*":
            body_type = message_type(body_type.fields_by_name[route.body])
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body_type, schemas)}},
        }
    return op


def _content(output: Descriptor, streaming: bool, schemas: dict[str, Schema]) -> Schema:
    if output.full_name == _HTTP_BODY:
        # the gateway answers with the body's own bytes and media type (CSV for the usage export)
        return {"*/*": {"schema": {"type": "string"}}}
    media = "text/event-stream" if streaming else "application/json"
    return {media: {"schema": ref(output, schemas)}}


def _security(route: Route) -> list[dict[str, list[str]]]:
    """One requirement per accepted credential: any one of them is enough."""
    access: schema_pb2.Access = route.method.containing_service.GetOptions().Extensions[_ACCESS]
    out: list[dict[str, list[str]]] = []
    for credential in access.credentials:
        if credential == schema_pb2.CREDENTIAL_NONE:
            out.append({})
        else:
            out.append({_SCHEMES[credential][0]: []})
    return out


def _path_schema(route: Route, variable: str) -> Schema:
    desc: Descriptor = route.method.input_type
    *parents, leaf = variable.split(".")
    for name in parents:
        desc = message_type(desc.fields_by_name[name])
    return {"minLength": 1, **field_schema(plan(desc).by_name[leaf], {})}


def _query_parameters(route: Route, schemas: dict[str, Schema]) -> list[dict[str, Any]]:
    """The request's scalar fields, when the body is not the whole request."""
    if route.body == "*":
        return []
    bound = {route.body, *(v.split(".")[0] for v in route.variables)}
    return _query_fields(route.method.input_type, "", bound, schemas)


def _query_fields(
    desc: Descriptor, prefix: str, bound: set[str], schemas: dict[str, Schema]
) -> list[dict[str, Any]]:
    """Scalar fields as query parameters; a singular message field's as `field.name`."""
    out: list[dict[str, Any]] = []
    for f in plan(desc).by_name.values():
        if f.name in bound or f.raw or f.is_map:
            continue
        name = prefix + f.key
        if f.is_message and not f.repeated and not _is_mask(f):
            out.extend(_query_fields(message_type(f.fd), f"{name}.", set(), schemas))
        elif not f.is_message or _is_mask(f):
            out.append({"name": name, "in": "query", "schema": field_schema(f, schemas)})
    return out


def _is_mask(f: Field) -> bool:
    return message_type(f.fd).full_name == FIELD_MASK


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
