"""The OpenAPI 3.1 document the gateway serves, and the OpenAI schema fixture.

`openapi-spec-validator` is not a dependency, so the document is checked
structurally (every `$ref` resolves, every schema is valid JSON Schema 2020-12,
path parameters match their templates) and by validating sample JSON with it.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.openapi import document
from gateway.routes import discover
from gateway.transcode import to_json
from tests.gateway.test_transcode import (
    REQUEST_BODIES,
    STREAM,
    body,
    completion,
    drop_nulls,
    models,
)
from tests.openai_schema import FIXTURE
from tokenwire.admin.v1 import admin_pb2
from tokenwire.chat.v1 import chat_pb2, models_pb2
from tokenwire.memory.v1 import memory_pb2
from tokenwire.templates.v1 import templates_pb2
from tokenwire.usage.v1 import usage_pb2

JSON = Any
DOC = document(
    discover(
        [
            chat_pb2.DESCRIPTOR.services_by_name["ChatService"],
            models_pb2.DESCRIPTOR.services_by_name["ModelService"],
        ]
    )
)
SCHEMAS: dict[str, JSON] = DOC["components"]["schemas"]
# Every service the gateway serves, for what the chat and model services lack.
FULL = document(
    discover(
        [
            chat_pb2.DESCRIPTOR.services_by_name["ChatService"],
            models_pb2.DESCRIPTOR.services_by_name["ModelService"],
            templates_pb2.DESCRIPTOR.services_by_name["TemplateService"],
            memory_pb2.DESCRIPTOR.services_by_name["MemoryService"],
            admin_pb2.DESCRIPTOR.services_by_name["AdminService"],
            usage_pb2.DESCRIPTOR.services_by_name["UsageService"],
        ]
    )
)
PREFIX = "tokenwire.chat.v1."
OPERATIONS = [(path, verb, op) for path, item in DOC["paths"].items() for verb, op in item.items()]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{PREFIX}{name}"}


def refs(value: JSON) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"]
        for v in value.values():
            yield from refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from refs(v)


def resolve(doc: JSON, ref: str) -> JSON:
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


@cache
def doc_validator(name: str) -> Draft202012Validator:
    resource = Resource.from_contents(DOC, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:tokenwire:openapi", resource)
    return Draft202012Validator(
        {"$ref": f"urn:tokenwire:openapi#/components/schemas/{PREFIX}{name}"}, registry=registry
    )


def errors(name: str, instance: JSON) -> list[str]:
    found = doc_validator(name).iter_errors(instance)
    return [f"{e.json_path}: {e.message}" for e in found]


def accepts(name: str, instance: JSON) -> bool:
    return not errors(name, instance)


# ---------------------------------------------------------------- document structure


def test_document_header() -> None:
    assert DOC["openapi"] == "3.1.0"
    assert DOC["info"]["title"] == "tokenwire"
    assert isinstance(DOC["info"]["version"], str) and DOC["info"]["version"]
    schemes = DOC["components"]["securitySchemes"]
    assert {k: (v["type"], v.get("scheme"), v.get("name")) for k, v in schemes.items()} == {
        "apiKey": ("http", "bearer", None),
        "organization": ("apiKey", None, "organization_id"),
        "adminToken": ("http", "bearer", None),
    }
    assert "security" not in DOC  # each operation says its own


@pytest.mark.parametrize(
    ("path", "verb", "security"),
    [
        ("/v1/chat/completions", "post", [{"apiKey": []}, {"organization": []}, {}]),
        ("/v1/models", "get", [{"apiKey": []}, {"organization": []}, {}]),
        ("/v1/templates", "post", [{"apiKey": []}, {"organization": []}]),
        ("/v1/memories/{memory}", "delete", [{"apiKey": []}, {"organization": []}]),
        ("/v1/usage", "get", [{"apiKey": []}, {"organization": []}, {"adminToken": []}]),
        ("/v1/admin/keys", "post", [{"adminToken": []}]),
    ],
)
def test_security_per_route_from_the_service_access(
    path: str, verb: str, security: list[JSON]
) -> None:
    assert FULL["paths"][path][verb]["security"] == security


def test_paths_and_operations() -> None:
    assert [(path, verb, op["operationId"]) for path, verb, op in OPERATIONS] == [
        ("/v1/chat/completions", "post", "CreateChatCompletion"),
        ("/api/ai/chat/completions", "post", "CreateChatCompletion2"),
        ("/v1/models", "get", "ListModels"),
        ("/v1/models/{model}", "get", "GetModel"),
    ]


@pytest.mark.parametrize(("path", "verb", "op"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_operation_has_a_200_json_response_and_an_error(path: str, verb: str, op: JSON) -> None:
    ok = op["responses"]["200"]
    assert ok["description"]
    assert "$ref" in ok["content"]["application/json"]["schema"]
    error = op["responses"]["default"]["content"]["application/json"]["schema"]
    assert error["properties"]["error"]["required"] == ["message", "type", "param", "code"]


@pytest.mark.parametrize(("path", "verb", "op"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_path_parameters_match_the_template(path: str, verb: str, op: JSON) -> None:
    in_path = re.findall(r"\{([^}]+)\}", path)
    assert [p["name"] for p in op["parameters"]] == in_path
    assert all(p["in"] == "path" and p["required"] is True for p in op["parameters"])


def test_chat_operation_serves_json_or_event_stream() -> None:
    chat = DOC["paths"]["/v1/chat/completions"]["post"]
    content = chat["responses"]["200"]["content"]
    assert content == {
        "application/json": {"schema": ref("CreateChatCompletionResponse")},
        "text/event-stream": {"schema": ref("ChatCompletionChunk")},
    }
    request = chat["requestBody"]["content"]["application/json"]["schema"]
    assert request == ref("CreateChatCompletionRequest")
    assert "requestBody" not in DOC["paths"]["/v1/models"]["get"]


def test_get_model_returns_the_model_itself() -> None:
    ok = DOC["paths"]["/v1/models/{model}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == ref("Model")


def test_every_ref_resolves() -> None:
    found = sorted(set(refs(DOC)))
    assert f"#/components/schemas/{PREFIX}ChatMessage" in found
    for ref in found:
        assert isinstance(resolve(DOC, ref), dict), ref


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_component_is_valid_json_schema(name: str) -> None:
    assert re.fullmatch(r"[a-zA-Z0-9.\-_]+", name)
    Draft202012Validator.check_schema(SCHEMAS[name])


def test_request_schema_fields() -> None:
    properties = SCHEMAS[f"{PREFIX}CreateChatCompletionRequest"]["properties"]
    assert {"messages", "model", "stop", "tools", "tool_choice", "provider"} <= set(properties)
    assert properties["messages"] == {"type": "array", "items": ref("ChatMessage"), "minItems": 1}
    assert SCHEMAS[f"{PREFIX}CreateChatCompletionRequest"]["required"] == ["messages"]


def test_operation_ids_are_unique() -> None:
    ids = [op["operationId"] for item in FULL["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert {"UpdateTemplate", "UpdateTemplate2", "RevokeKey", "RevokeKey2"} <= set(ids)


@pytest.mark.parametrize(
    ("change", "ok"),
    [
        ({"temperature": 2}, True),
        ({"temperature": 2.01}, False),
        ({"top_p": -0.1}, False),
        ({"n": 0}, False),
        ({"n": 128}, True),
        ({"max_tokens": 0}, False),
        ({"stop": ["a", "b", "c", "d", "e"]}, False),
        ({"stop": "a"}, True),
        ({"logit_bias": {"50256": -100}}, True),
        ({"logit_bias": {"50256": -101}}, False),
        ({"logit_bias": {"x": 1}}, False),
        ({"metadata": {str(i): "v" for i in range(17)}}, False),
        ({"user": "u" * 257}, False),
        ({"seed": 2**63}, False),
        ({"messages": []}, False),
        ({"messages": None}, False),
    ],
)
def test_request_schema_carries_the_bounds_the_server_enforces(
    change: dict[str, JSON], ok: bool
) -> None:
    assert accepts("CreateChatCompletionRequest", {**body(), **change}) is ok


def test_a_required_field_left_out_is_refused() -> None:
    sent = body()
    del sent["messages"]
    assert errors("CreateChatCompletionRequest", sent) == ["$: 'messages' is a required property"]
    message: dict[str, JSON] = {"content": "hi"}
    assert not accepts("CreateChatCompletionRequest", body(messages=[message]))


def test_deprecated_fields_say_so() -> None:
    properties = SCHEMAS[f"{PREFIX}CreateChatCompletionRequest"]["properties"]
    marked = sorted(k for k, v in properties.items() if v.get("deprecated"))
    assert marked == ["function_call", "functions", "max_tokens"]


def test_output_only_fields_are_read_only() -> None:
    template = FULL["components"]["schemas"]["tokenwire.templates.v1.Template"]["properties"]
    assert template["id"]["readOnly"] is True and template["version"]["readOnly"] is True
    assert "readOnly" not in template["name"]
    assert template["name"]["anyOf"][0]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


def test_query_parameters_are_the_unbound_scalar_fields() -> None:
    usage = FULL["paths"]["/v1/usage"]["get"]["parameters"]
    assert [p["name"] for p in usage] == [
        "filter.organization_id", "filter.key_id", "filter.session_id", "filter.model",
        "filter.user", "filter.start_time", "filter.end_time", "filter.trace_id", "group_by",
    ]  # fmt: skip
    group_by = usage[-1]["schema"]
    assert group_by["type"] == "array" and "day" in group_by["items"]["enum"]
    template = FULL["paths"]["/v1/templates/{template}"]["get"]["parameters"]
    assert [(p["name"], p["in"]) for p in template] == [("template", "path"), ("version", "query")]


@pytest.mark.parametrize(
    ("stop", "ok"), [("\n", True), (["a", "b"], True), ([], True), (5, False), ([1], False)]
)
def test_stop_accepts_a_string_or_an_array(stop: JSON, ok: bool) -> None:
    assert accepts("CreateChatCompletionRequest", body(stop=stop)) is ok


@pytest.mark.parametrize(
    ("content", "ok"),
    [("hi", True), ([{"type": "text", "text": "hi"}], True), (5, False), ({"text": "hi"}, False)],
)
def test_content_accepts_a_string_or_an_array(content: JSON, ok: bool) -> None:
    message = {"role": "user", "content": content}
    assert accepts("CreateChatCompletionRequest", body(messages=[message])) is ok


@pytest.mark.parametrize(
    ("choice", "ok"),
    [("auto", True), ({"type": "function", "function": {"name": "f"}}, True), ("always", False)],
)
def test_tool_choice_accepts_a_mode_or_a_named_function(choice: JSON, ok: bool) -> None:
    assert accepts("CreateChatCompletionRequest", body(tool_choice=choice)) is ok


def test_request_schema_refuses_unknown_keys_like_the_gateway() -> None:
    assert errors("CreateChatCompletionRequest", body(foo=1)) == [
        "$: Additional properties are not allowed ('foo' was unexpected)"
    ]


# ---------------------------------------------------------------- sample JSON


@pytest.mark.parametrize("sent", REQUEST_BODIES.values(), ids=REQUEST_BODIES.keys())
def test_request_schema_accepts_the_sample_bodies(sent: JSON) -> None:
    assert errors("CreateChatCompletionRequest", drop_nulls(sent)) == []


@pytest.mark.parametrize(
    "sent",
    [body(temperature=None, stop=None), REQUEST_BODIES["all_roles"]],
    ids=["top_level_nulls", "assistant_content_null"],
)
def test_request_schema_accepts_nulls(sent: JSON) -> None:
    assert errors("CreateChatCompletionRequest", sent) == []


def test_response_schemas_accept_rendered_messages() -> None:
    without_logprobs = completion()
    without_logprobs.choices[0].ClearField("logprobs")
    assert errors("CreateChatCompletionResponse", to_json(without_logprobs)) == []
    assert errors("ListModelsResponse", to_json(models())) == []
    assert errors("Model", to_json(models().data[1])) == []


@pytest.mark.parametrize("name", STREAM.keys())
def test_chunk_schema_accepts_rendered_chunks(name: str) -> None:
    assert errors("ChatCompletionChunk", to_json(STREAM[name][0])) == []


def test_response_schema_accepts_logprobs_without_refusal() -> None:
    assert errors("CreateChatCompletionResponse", to_json(completion())) == []


# ---------------------------------------------------------------- the OpenAI fixture

SPEC = Path(__file__).resolve().parents[3] / "shared" / "reference" / "openai-openapi.json"


def fixture() -> JSON:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def test_fixture_refs_resolve_and_use_no_nullable() -> None:
    doc = fixture()
    assert "nullable" not in FIXTURE.read_text(encoding="utf-8")
    for ref in set(refs(doc)):
        assert isinstance(resolve(doc, ref), dict), ref
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_fixture_has_a_license() -> None:
    assert "MIT License" in FIXTURE.with_suffix(".LICENSE").read_text(encoding="utf-8")


@pytest.mark.skipif(not SPEC.exists(), reason="../shared/reference is not checked out")
def test_fixture_is_fresh() -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "extract_openai_schemas.py"
    spec = importlib.util.spec_from_file_location("extract_openai_schemas", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = module.render(module.extract(json.loads(SPEC.read_text(encoding="utf-8"))))
    assert fresh == FIXTURE.read_text(encoding="utf-8"), "run scripts/extract_openai_schemas.py"


def test_an_http_body_response_is_its_own_media_type() -> None:
    export = FULL["paths"]["/v1/usage/export"]["get"]["responses"]["200"]["content"]
    assert export == {"*/*": {"schema": {"type": "string"}}}


@pytest.mark.parametrize(("parameters", "ok"), [({"type": "object"}, True), ([1], False)])
def test_raw_json_fields_say_which_json_type_they_take(parameters: JSON, ok: bool) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": parameters}}
    assert accepts("CreateChatCompletionRequest", body(tools=[tool])) is ok


def test_a_create_links_to_the_operations_on_what_it_created() -> None:
    links = {
        path: sorted(op["responses"]["200"]["links"])
        for path, item in FULL["paths"].items()
        for op in item.values()
        if "links" in op["responses"]["200"]
    }
    assert links == {
        "/v1/templates": ["DeleteTemplate", "GetTemplate", "UpdateTemplate", "UpdateTemplate2"],
        "/v1/memories": ["DeleteMemory", "GetMemory"],
        "/v1/admin/keys": ["GetKey", "RevokeKey", "RevokeKey2", "RotateKey"],
    }
    created = FULL["paths"]["/v1/admin/keys"]["post"]["responses"]["200"]["links"]
    assert created["GetKey"] == {
        "operationId": "GetKey",
        "parameters": {"key_id": "$response.body#/key/id"},
    }
