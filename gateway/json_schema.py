"""JSON Schemas (2020-12) of messages as `gateway.transcode` reads and renders them.

The contract's annotations become keywords: `google.api.field_behavior`
REQUIRED is `required` (and no `null`), OUTPUT_ONLY is `readOnly`, the
`deprecated` field option is `deprecated`, and `tokenwire.options.v1.bounds`
gives ranges, lengths, item counts and patterns. So the schema refuses what
the server refuses, and accepts what it accepts.
"""

from __future__ import annotations

from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.transcode import FIELD_MASK, Field, enum_names, message_type, plan
from tokenwire.options.v1 import schema_pb2

Schema = dict[str, Any]

_SCALARS: dict[int, Schema] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
_REQUIRED = field_behavior_pb2.REQUIRED
_OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY
_BEHAVIOR: Any = field_behavior_pb2.field_behavior  # its stubs type it as a plain descriptor
_BOUNDS: Any = schema_pb2.bounds


def behaviors(fd: FieldDescriptor) -> frozenset[int]:
    """The field's `google.api.field_behavior` values."""
    return frozenset(fd.GetOptions().Extensions[_BEHAVIOR])


def ref(desc: Descriptor, components: dict[str, Schema]) -> Schema:
    """A `$ref` to the message's schema, added to `components` (by full name) if new."""
    name = desc.full_name
    if name not in components:
        components[name] = {}  # placeholder first: messages may refer to themselves
        components[name] = _message_schema(desc, components)
    return {"$ref": f"#/components/schemas/{name}"}


def field_schema(f: Field, components: dict[str, Schema]) -> Schema:
    """The schema of one field's JSON value, bounds included."""
    bounds: schema_pb2.Bounds = f.fd.GetOptions().Extensions[_BOUNDS]
    value = _value_bounds(bounds)
    if f.map_value is not None:
        # a map's bounds: entry counts, the pattern of its keys, the rest on its values
        keys = {"propertyNames": {"pattern": value.pop("pattern")}} if "pattern" in value else {}
        entry = {**_single(f.map_value, components), **value}
        return {
            "type": "object",
            "additionalProperties": entry,
            **keys,
            **_count(bounds, "Properties"),
        }
    one = {**_single(f, components), **value}
    if not f.repeated:
        return one
    many: Schema = {"type": "array", "items": one, **_count(bounds, "Items")}
    return {"oneOf": [one, many]} if f.scalar_or_list else many


def _message_schema(desc: Descriptor, components: dict[str, Schema]) -> Schema:
    p = plan(desc)
    if p.unwrap is not None:
        return field_schema(p.unwrap, components)
    props: dict[str, Schema] = {}
    required: list[str] = []
    for key, fields in p.by_key.items():
        # fields sharing a key are alternatives (a oneof); null means unset, as in OpenAI's API
        alternatives = [field_schema(f, components) for f in fields]
        marks = frozenset().union(*(behaviors(f.fd) for f in fields))
        if _REQUIRED in marks:
            required.append(key)
            prop: Schema = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
        else:
            prop = {"anyOf": [*alternatives, {"type": "null"}]}
        if _OUTPUT_ONLY in marks:
            prop["readOnly"] = True
        if any(f.fd.GetOptions().deprecated for f in fields):
            prop["deprecated"] = True
        props[key] = prop
    schema: Schema = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _single(f: Field, components: dict[str, Schema]) -> Schema:
    t = f.fd.type
    if f.raw:
        return {}
    if t == FieldDescriptor.TYPE_MESSAGE:
        if message_type(f.fd).full_name == FIELD_MASK:
            return {"type": "string", "description": "Field paths separated by commas."}
        return ref(message_type(f.fd), components)
    if t == FieldDescriptor.TYPE_ENUM:
        return {"type": "string", "enum": list(enum_names(f.fd.enum_type).by_name)}
    if t in _SCALARS:
        return dict(_SCALARS[t])
    low, high = _INT_RANGES[f.fd.cpp_type]  # what the gateway's integer parser accepts
    return {"type": "integer", "minimum": low, "maximum": high}


def _value_bounds(b: schema_pb2.Bounds) -> Schema:
    out: Schema = {}
    if b.HasField("minimum"):
        out["exclusiveMinimum" if b.exclusive_minimum else "minimum"] = _number(b.minimum)
    if b.HasField("maximum"):
        out["maximum"] = _number(b.maximum)
    if b.HasField("min_length"):
        out["minLength"] = b.min_length
    if b.HasField("max_length"):
        out["maxLength"] = b.max_length
    if b.pattern:
        out["pattern"] = b.pattern
    if b.format:
        out["format"] = b.format
    if b.json_type:
        out["type"] = b.json_type
    return out


def _count(b: schema_pb2.Bounds, what: str) -> Schema:
    """`minItems`/`maxItems` (or `…Properties` for a map) from the item bounds."""
    out: Schema = {}
    if b.HasField("min_items"):
        out[f"min{what}"] = b.min_items
    if b.HasField("max_items"):
        out[f"max{what}"] = b.max_items
    return out


def _number(value: float) -> int | float:
    """Integral bounds print as integers, so `integer` schemas keep integer bounds."""
    return int(value) if value.is_integer() else value
