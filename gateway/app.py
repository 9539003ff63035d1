"""The gateway's ASGI app: REST and SSE in, RPCs out, every answer OpenAI-shaped.

A plain ASGI callable rather than a framework: the request path is measured
in microseconds and the routing comes from the proto anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from google.api import httpbody_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from gateway import openapi
from gateway.config import GatewayConfig
from gateway.disconnect import unless_disconnected
from gateway.errors import SHUTTING_DOWN, GatewayError, from_rpc
from gateway.http import (
    Receive,
    Scope,
    Send,
    encode_headers,
    header_map,
    read_body,
    send_bytes,
    send_json,
)
from gateway.invoker import Invoker, Metadata, Reply, RpcFailure
from gateway.json_body import parse_json, require_json
from gateway.local import LocalRoute, send_answer
from gateway.metadata import checked, request_id_from
from gateway.routes import Match, Route, Router, discover
from gateway.sse import SSE_HEADERS, SseResponse
from gateway.transcode import TranscodeError, merge_json, query_json, to_json

log = logging.getLogger("tokenwire.gateway")


class Gateway:
    """Serves the HTTP bindings of `services` by calling them through `invoker`."""

    def __init__(
        self,
        services: Iterable[ServiceDescriptor],
        invoker: Invoker,
        config: GatewayConfig,
        local: Mapping[str, LocalRoute] | None = None,
    ) -> None:
        self.config = config
        self.local = dict(local or {})  # GET paths the running process answers itself
        self.router = Router(discover(services))
        self.invoker = invoker
        self.openapi = openapi.document(self.router.routes)
        self._read_headers = frozenset(
            name.encode("latin-1")
            for name in ("x-request-id", "content-type", *config.forwarded_headers)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope, self._read_headers)
        request_id = request_id_from(headers.get("x-request-id"))
        headers["x-request-id"] = request_id
        out = [(b"x-request-id", request_id.encode("latin-1"))]
        try:
            await self._dispatch(scope, receive, send, headers, out)
        except GatewayError as e:
            await send_json(send, e.status, e.body(), out + encode_headers(e.headers))
        except RpcFailure as failure:
            error = from_rpc(failure, self._forwarded(failure.metadata))
            await send_json(send, error.status, error.body(), out + encode_headers(error.headers))
        except ConnectionAbortedError:
            pass  # the client left before sending its whole request
        except Exception:
            log.exception("unhandled error serving %s %s", scope["method"], scope["path"])
            internal = GatewayError(500, "The server had an error while processing your request.")
            await send_json(send, 500, internal.body(), out)

    async def _dispatch(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], out: Any
    ) -> None:
        verb, path = scope["method"], scope["path"]
        if verb == "GET" and path == "/openapi.json":
            await send_json(send, 200, self.openapi, out)
            return
        if verb == "GET" and path in self.local:
            await send_answer(send, await self.local[path](), out)
            return
        match = self.router.match(verb, path)
        if match is None:
            raise self._no_route(verb, path)
        route, request = await self._request(scope, receive, match, headers)
        metadata = self._metadata(headers, scope)
        reply = Reply()
        if route.streaming:
            response = SseResponse(
                self.invoker.stream(route, request, metadata, reply),
                lambda m: _render(route, m),
                lambda: SSE_HEADERS + out + encode_headers(self._forwarded(reply.metadata)),
                reply.initial,
                self.config.keepalive_interval,
                lambda failure: from_rpc(failure, self._forwarded(failure.metadata)),
            )
            await response(send, receive)
        else:
            call = self.invoker.unary(route, request, metadata, reply)
            try:
                message = await unless_disconnected(call, receive)
            except asyncio.CancelledError:
                # Only the server cancels a request (a client that leaves is ConnectionAborted):
                # its stop's grace period ran out. uvicorn's answer would be a plain-text 500.
                await send_json(send, 503, SHUTTING_DOWN.body(), out)
                asyncio.current_task().uncancel()  # type: ignore[union-attr]  # answered: done
                return
            extra = encode_headers(self._forwarded(reply.metadata))
            payload = _payload(route, message)
            if isinstance(payload, httpbody_pb2.HttpBody):
                # the body's own bytes and media type, as `google.api.HttpBody` means
                content_type = (b"content-type", payload.content_type.encode("latin-1"))
                await send_bytes(send, 200, payload.data, [content_type, *out, *extra])
            else:
                await send_json(send, 200, to_json(payload), out + extra)

    def _forwarded(self, metadata: Any) -> dict[str, str]:
        """Response metadata that clients see as HTTP headers."""
        prefixes = self.config.response_header_prefixes
        return {k: v for k, v in metadata if k.startswith(prefixes)}

    def _no_route(self, verb: str, path: str) -> GatewayError:
        allowed = self.router.allowed(path)
        if allowed:
            return GatewayError(
                405,
                f"Method {verb} is not allowed on {path}; use {', '.join(allowed)}.",
                headers={"Allow": ", ".join(allowed)},
            )
        return GatewayError(404, f"Unknown request URL: {verb} {path}.", code="unknown_url")

    async def _request(
        self, scope: Scope, receive: Receive, match: Match, headers: dict[str, str]
    ) -> tuple[Route, Message]:
        """The route the request takes and the RPC request built from its body, path and query."""
        if match.routes[0].body:
            require_json(headers.get("content-type"))
        raw = await read_body(scope, receive, self.config.max_body_bytes, self.config.body_timeout)
        query = _query(scope)
        config = self.config
        if len(raw) < config.offload_body_bytes and raw.count(b"{") < config.offload_objects:
            return _parse(match, raw, query)
        # Parsing and transcoding this body takes long enough to stall every other client.
        return await asyncio.to_thread(_parse, match, raw, query)

    def _metadata(self, headers: dict[str, str], scope: Scope) -> Metadata:
        pairs = [(k, headers[k]) for k in self.config.forwarded_headers if k in headers]
        client = scope.get("client")
        if client:
            pairs.append(("x-forwarded-for", str(client[0])))
        return checked(tuple(pairs))


def _parse(match: Match, raw: bytes, query: list[tuple[str, str]]) -> tuple[Route, Message]:
    body = parse_json(raw) if match.routes[0].body else None
    route = _pick(match.routes, body)
    return route, _build_request(route, body, match.params, query)


def _pick(routes: tuple[Route, ...], body: Any) -> Route:
    """The streaming RPC when the body says `"stream": true`, else the unary one."""
    if len(routes) == 1:
        return routes[0]
    wants_stream = isinstance(body, dict) and body.get("stream") is True
    return next((r for r in routes if r.streaming == wants_stream), routes[0])


def _query(scope: Scope) -> list[tuple[str, str]]:
    raw: bytes = scope.get("query_string", b"")
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []


def _build_request(
    route: Route, body: Any, params: Mapping[str, str], query: list[tuple[str, str]]
) -> Message:
    """The RPC request from the path variables, the body and (unless the body is `*`) the query."""
    request = route.request_class()
    try:
        if route.body == "*":
            merge_json(body, request)
        elif route.body:
            merge_json(body, getattr(request, route.body))
        if query and route.body != "*":
            merge_json(query_json(route.method.input_type, query), request)
        if params:
            merge_json(_nest(params), request)
    except TranscodeError as e:
        raise GatewayError(400, e.message, param=e.param) from None
    return request


def _nest(params: Mapping[str, str]) -> dict[str, Any]:
    """Path variables by field path (`a.b`) as the nested JSON object they stand for."""
    out: dict[str, Any] = {}
    for path, value in params.items():
        *parents, leaf = path.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return out


def _payload(route: Route, message: Message) -> Message:
    """What the response carries: the whole message or its `response_body` field."""
    payload: Message = getattr(message, route.response_body) if route.response_body else message
    return payload


def _render(route: Route, message: Message) -> Any:
    return to_json(_payload(route, message))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
