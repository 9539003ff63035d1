"""REST routes discovered from the `google.api.http` options of service descriptors.

Adding a bound RPC to the proto adds its route here with no handler code.
Several RPCs may share one method and path (the unary and the streaming chat
call); `Route.streaming` tells them apart and the app picks by the body.

As in `google.api.http`, a path ending in `:verb` names a custom method: it
matches only templates with that verb, so `GET /v1/admin/keys/0:revoke` is not
`GetKey` of `0:revoke`. A colon followed by anything else is part of the path
(model ids such as `meta-llama/Llama-3.1-8B:free`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

_VERBS = ("get", "put", "post", "delete", "patch")
_HTTP: Any = annotations_pb2.http  # its stubs type it as a plain FieldDescriptor
_VARIABLE = re.compile(r"\{([a-zA-Z0-9_.]+)(?:=([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP binding of one RPC."""

    verb: str  # upper-case HTTP method
    template: str  # the path template as written in the proto
    pattern: re.Pattern[str]
    variables: tuple[str, ...]  # request field paths bound from the path
    method: MethodDescriptor
    body: str  # "*", a request field name, or "" for no body
    response_body: str  # "" for the whole response, else a response field name
    custom_verb: str = ""  # `revoke` in `/v1/admin/keys/{key_id}:revoke`
    # Derived from `method` once: every request reads them.
    streaming: bool = field(init=False)
    grpc_path: str = field(init=False)
    request_class: type[Message] = field(init=False)

    def __post_init__(self) -> None:
        method = self.method
        path = f"/{method.containing_service.full_name}/{method.name}"
        object.__setattr__(self, "streaming", bool(method.server_streaming))
        object.__setattr__(self, "grpc_path", path)
        object.__setattr__(
            self, "request_class", message_factory.GetMessageClass(method.input_type)
        )


def discover(services: Iterable[ServiceDescriptor]) -> tuple[Route, ...]:
    """Every HTTP binding of every method of the given services."""
    return tuple(
        route for service in services for method in service.methods for route in _routes_of(method)
    )


def _routes_of(method: MethodDescriptor) -> list[Route]:
    options = method.GetOptions()
    if not options.HasExtension(_HTTP):
        return []
    rule: http_pb2.HttpRule = options.Extensions[_HTTP]
    return [_route(method, r) for r in (rule, *rule.additional_bindings)]


def _route(method: MethodDescriptor, rule: http_pb2.HttpRule) -> Route:
    verb = rule.WhichOneof("pattern")
    if verb not in _VERBS:
        raise ValueError(f"{method.full_name}: unsupported HTTP pattern {verb!r}")
    template: str = getattr(rule, verb)
    pattern, variables = compile_template(template)
    return Route(
        verb.upper(),
        template,
        pattern,
        variables,
        method,
        rule.body,
        rule.response_body,
        custom_verb(template),
    )


def custom_verb(path: str) -> str:
    """The `:verb` ending the last segment of a template or path ("" for none)."""
    last = path.rsplit("/", 1)[-1]
    _, colon, verb = last.rpartition(":")
    return verb if colon and "}" not in verb else ""


def compile_template(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """`/v1/models/{model=**}` -> a regex with one group per variable."""
    regex, variables, pos = "", [], 0
    for m in _VARIABLE.finditer(template):
        regex += re.escape(template[pos : m.start()])
        variables.append(m.group(1))
        regex += f"({_segment_regex(m.group(2) or '*')})"
        pos = m.end()
    regex += re.escape(template[pos:])
    return re.compile(f"^{regex}$"), tuple(variables)


def _segment_regex(segment: str) -> str:
    """`projects/*` -> `projects/[^/]+`; `**` matches the rest, slashes included."""
    parts = []
    for part in segment.split("/"):
        parts.append(".+" if part == "**" else "[^/]+" if part == "*" else re.escape(part))
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class Match:
    routes: tuple[Route, ...]  # same verb and path: the unary and/or streaming RPC
    params: Mapping[str, str]


_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


class Router:
    """Finds the routes for a request's method and path."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        # Literal paths are the common case: one dict lookup instead of a regex scan,
        # and a match made once.
        literal: dict[tuple[str, str], tuple[Route, ...]] = {}
        for r in self.routes:
            if not r.variables:
                key = (r.verb, r.template)
                literal[key] = (*literal.get(key, ()), r)
        self._literal = {key: Match(routes, _NO_PARAMS) for key, routes in literal.items()}
        self._custom_verbs = frozenset(r.custom_verb for r in self.routes) - {""}

    def match(self, verb: str, path: str) -> Match | None:
        literal = self._literal.get((verb, path))
        if literal is not None:
            return literal
        found: list[Route] = []
        params: dict[str, str] = {}
        for r, m in self._matching(path):
            if r.verb == verb and r.variables:
                found.append(r)
                params = dict(zip(r.variables, m.groups(), strict=True))
        return Match(tuple(found), params) if found else None

    def allowed(self, path: str) -> list[str]:
        """The verbs bound to `path`, for 405's `Allow` header (empty means 404)."""
        return sorted({r.verb for r, _ in self._matching(path)})

    def _matching(self, path: str) -> Iterator[tuple[Route, re.Match[str]]]:
        """The routes whose template matches `path`, custom verb included."""
        verb = custom_verb(path)
        verb = verb if verb in self._custom_verbs else ""  # else the colon is part of an id
        for r in self.routes:
            m = r.pattern.match(path) if r.custom_verb == verb else None
            if m:
                yield r, m
