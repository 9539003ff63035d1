"""Routes discovered from the `google.api.http` options of the service descriptors."""

from __future__ import annotations

import httpx
import pytest

from gateway.routes import Route, Router, compile_template, discover
from server.runtime import app
from tokenwire.admin.v1 import admin_pb2
from tokenwire.chat.v1 import chat_pb2, models_pb2

SERVICES = (
    chat_pb2.DESCRIPTOR.services_by_name["ChatService"],
    models_pb2.DESCRIPTOR.services_by_name["ModelService"],
)
ROUTES = discover(SERVICES)
ROUTER = Router(ROUTES)


def summary(route: Route) -> tuple[str, str, str, bool, str, str]:
    return (
        route.verb,
        route.template,
        route.method.name,
        route.streaming,
        route.body,
        route.response_body,
    )


def test_discovery_finds_every_binding() -> None:
    assert [summary(r) for r in ROUTES] == [
        ("POST", "/v1/chat/completions", "CreateChatCompletion", False, "*", ""),
        ("POST", "/api/ai/chat/completions", "CreateChatCompletion", False, "*", ""),
        ("POST", "/v1/chat/completions", "StreamChatCompletion", True, "request", "chunk"),
        ("POST", "/api/ai/chat/completions", "StreamChatCompletion", True, "request", "chunk"),
        ("GET", "/v1/models", "ListModels", False, "", ""),
        ("GET", "/v1/models/{model=**}", "GetModel", False, "", "model"),
    ]


def test_grpc_paths() -> None:
    assert [r.grpc_path for r in ROUTES] == [
        "/tokenwire.chat.v1.ChatService/CreateChatCompletion",
        "/tokenwire.chat.v1.ChatService/CreateChatCompletion",
        "/tokenwire.chat.v1.ChatService/StreamChatCompletion",
        "/tokenwire.chat.v1.ChatService/StreamChatCompletion",
        "/tokenwire.chat.v1.ModelService/ListModels",
        "/tokenwire.chat.v1.ModelService/GetModel",
    ]


def test_a_service_without_http_options_gives_no_routes() -> None:
    assert discover([]) == ()
    assert discover([SERVICES[1]]) == ROUTES[4:]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/ai/chat/completions"])
def test_chat_path_matches_the_unary_and_streaming_pair(path: str) -> None:
    match = ROUTER.match("POST", path)
    assert match is not None
    assert [(r.method.name, r.streaming) for r in match.routes] == [
        ("CreateChatCompletion", False),
        ("StreamChatCompletion", True),
    ]
    assert match.params == {}


def test_model_list_is_not_taken_for_a_model_id() -> None:
    match = ROUTER.match("GET", "/v1/models")
    assert match is not None
    assert [r.method.name for r in match.routes] == ["ListModels"]


@pytest.mark.parametrize(
    "model",
    ["gemma-3-270m", "openai/gpt-4o", "meta-llama/Llama-3.1-8B:free", "a/b/c", "ft:gpt-4o:org:x:1"],
)
def test_model_id_may_contain_slashes(model: str) -> None:
    match = ROUTER.match("GET", f"/v1/models/{model}")
    assert match is not None
    assert [r.method.name for r in match.routes] == ["GetModel"]
    assert match.params == {"model": model}


@pytest.mark.parametrize(
    ("verb", "path"),
    [
        ("GET", "/v1/unknown"),
        ("POST", "/v1/completions"),
        ("GET", "/v1/chat/completions"),
        ("POST", "/v1/models"),
        ("DELETE", "/v1/models/gpt-4o"),
        ("GET", "/v1/models/"),
        ("GET", "/v1/chat/completions/extra"),
        ("POST", "/v1/chat/completions/"),
        ("GET", "v1/models"),
    ],
)
def test_unknown_path_or_verb_matches_nothing(verb: str, path: str) -> None:
    assert ROUTER.match(verb, path) is None


@pytest.mark.parametrize(
    ("path", "verbs"),
    [
        ("/v1/chat/completions", ["POST"]),
        ("/v1/models", ["GET"]),
        ("/v1/models/openai/gpt-4o", ["GET"]),
        ("/v1/unknown", []),
        ("/v1/models/", []),
    ],
)
def test_allowed_lists_the_verbs_for_405(path: str, verbs: list[str]) -> None:
    assert ROUTER.allowed(path) == verbs


def test_allowed_is_sorted_and_unique() -> None:
    get_on_chat_path = _with_template(ROUTES[4], "/v1/chat/completions")
    router = Router([*ROUTES, *ROUTES, get_on_chat_path])
    assert router.allowed("/v1/chat/completions") == ["GET", "POST"]


def _with_template(route: Route, template: str) -> Route:
    pattern, variables = compile_template(template)
    return Route(
        route.verb, template, pattern, variables, route.method, route.body, route.response_body
    )


# ---------------------------------------------------------------- synthetic templates

TEMPLATES = [
    # template, variables, path, expected captures (None: no match)
    ("/v1/a/{id}", ("id",), "/v1/a/42", ("42",)),
    ("/v1/a/{id}", ("id",), "/v1/a/4/2", None),
    ("/v1/a/{id}", ("id",), "/v1/a/", None),
    ("/v1/a/{id}", ("id",), "/v1/a/42/", None),
    ("/v1/a/{id}", ("id",), "/v1/b/42", None),
    ("/v1/{model=**}", ("model",), "/v1/x/y/z", ("x/y/z",)),
    ("/v1/{a}/b/{c.d}", ("a", "c.d"), "/v1/1/b/2", ("1", "2")),
    ("/v1/{a}/b/{c.d}", ("a", "c.d"), "/v1/1/x/2", None),
    ("/v1/x.y/{id}", ("id",), "/v1/x.y/1", ("1",)),
    ("/v1/x.y/{id}", ("id",), "/v1/xzy/1", None),  # literal dots are escaped
    ("/v1/{name}:cancel", ("name",), "/v1/op1:cancel", ("op1",)),
]


@pytest.mark.parametrize(("template", "variables", "path", "captures"), TEMPLATES)
def test_template_compiles(
    template: str, variables: tuple[str, ...], path: str, captures: tuple[str, ...] | None
) -> None:
    pattern, found = compile_template(template)
    assert found == variables
    match = pattern.match(path)
    assert (match.groups() if match else None) == captures


SEGMENTED = [
    pytest.param("/v1/{name=projects/*}/x", "/v1/projects/p1/x", ("projects/p1",)),
    pytest.param("/v1/{name=projects/*}/x", "/v1/p1/x", None),
    ("/v1/{name=projects/*}/x", "/v1/projects/p1/p2/x", None),
    pytest.param(
        "/v1/{name=projects/*/models/*}",
        "/v1/projects/p/models/m",
        ("projects/p/models/m",),
    ),
    pytest.param("/v1/{name=projects/**}", "/v1/other/p/q", None),
]


@pytest.mark.parametrize(("template", "path", "captures"), SEGMENTED)
def test_template_with_literal_segments_in_the_variable(
    template: str, path: str, captures: tuple[str, ...] | None
) -> None:
    pattern, variables = compile_template(template)
    assert variables == ("name",)
    match = pattern.match(path)
    assert (match.groups() if match else None) == captures


# ---------------------------------------------------------------- custom verbs

ADMIN = Router(discover([admin_pb2.DESCRIPTOR.services_by_name["AdminService"]]))


@pytest.mark.parametrize(
    ("verb", "path", "method", "params"),
    [
        ("GET", "/v1/admin/keys/0", "GetKey", {"key_id": "0"}),
        ("POST", "/v1/admin/keys/0:revoke", "RevokeKey", {"key_id": "0"}),
        ("POST", "/v1/admin/keys/0:rotate", "RotateKey", {"key_id": "0"}),
        ("DELETE", "/v1/admin/keys/0", "RevokeKey", {"key_id": "0"}),
    ],
)
def test_a_custom_verb_picks_its_own_method(
    verb: str, path: str, method: str, params: dict[str, str]
) -> None:
    match = ADMIN.match(verb, path)
    assert match is not None
    assert [r.method.name for r in match.routes] == [method]
    assert match.params == params


@pytest.mark.parametrize("path", ["/v1/admin/keys/0:revoke", "/v1/admin/keys/0:rotate"])
def test_a_variable_does_not_swallow_a_custom_verb(path: str) -> None:
    """`GET …/0:revoke` is not GetKey of `0:revoke`: its verb is 405, POST being allowed."""
    assert ADMIN.match("GET", path) is None
    assert ADMIN.allowed(path) == ["POST"]


def test_an_unknown_verb_is_part_of_the_id() -> None:
    match = ADMIN.match("GET", "/v1/admin/keys/0:other")
    assert match is not None
    assert match.params == {"key_id": "0:other"}


async def test_get_of_a_custom_verb_is_405_from_a_real_server(service: app.Service) -> None:
    url = f"http://127.0.0.1:{service.http_port}/v1/admin/keys/0:revoke"
    async with httpx.AsyncClient() as http:
        response = await http.get(url, headers={"Authorization": "Bearer admin-token-0123456789"})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["type"] == "invalid_request_error"
