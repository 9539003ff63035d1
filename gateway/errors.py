"""Errors as OpenAI-shaped JSON: `{"error": {"message", "type", "param", "code"}}`.

    GatewayError        an error the gateway itself finds (bad JSON, 404, 405, 413, 415),
                        or its HTTP protocol does (malformed request 400, 408, 431)
    RpcFailure          an RPC's non-OK status (`gateway.invoker`), translated here

The HTTP status follows the gRPC code (`HTTP_STATUS`, the mapping grpc-gateway,
Envoy and google/rpc/code.proto share) unless the status carries a
`google.rpc.ErrorInfo` whose metadata names `http_status` — how 402, 422 and
502 cross gRPC. ErrorInfo's `reason` is OpenAI's `code`; its metadata
`type` and `param` fill the rest. A `google.protobuf.Struct` detail becomes the
error's `metadata` object (OpenRouter's place for structured facts: a moderation
refusal's `reasons` and `flagged_input`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2

from gateway.invoker import RpcFailure

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
}


@dataclass
class GatewayError(Exception):
    """An error answered by the gateway itself."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    type: str | None = None  # OpenAI's error type; derived from the status when unset
    metadata: dict[str, object] | None = None  # structured facts, when the error has any

    def body(self) -> dict[str, object]:
        type_ = self.type or _TYPES.get(self.status, "api_error")
        return error_body(self.message, type_, self.param, self.code, self.metadata)


def error_body(
    message: str,
    type_: str,
    param: str | None,
    code: str | None,
    metadata: dict[str, object] | None = None,
) -> dict[str, object]:
    error: dict[str, object] = {"message": message, "type": type_, "param": param, "code": code}
    if metadata is not None:
        error["metadata"] = metadata
    return {"error": error}


# What a request the server's stop cut off answers, streamed or not (the server's own
# `server.errors.SHUTTING_DOWN` says the same over gRPC).
SHUTTING_DOWN = GatewayError(
    503,
    "The server is shutting down and its grace period for requests in flight ran out; "
    "retry the request.",
    code="server_shutting_down",
)


def from_rpc(failure: RpcFailure, forwarded: dict[str, str] | None = None) -> GatewayError:
    """Translate an RPC failure into the HTTP error the client sees.

    `forwarded` holds the failure's response metadata already chosen as headers.
    """
    info = _error_info(failure)
    meta = dict(info.metadata) if info else {}
    status = int(meta.get("http_status") or HTTP_STATUS.get(failure.code, 500))
    headers = dict(forwarded or {})
    if "retry_after" in meta:
        headers["Retry-After"] = meta["retry_after"]
    return GatewayError(
        status,
        failure.message or failure.code.name.lower(),
        param=meta.get("param") or None,
        code=(info.reason if info else None) or failure.code.name.lower(),
        headers=headers,
        type=meta.get("type"),
        metadata=_structured(failure),
    )


def _structured(failure: RpcFailure) -> dict[str, object] | None:
    for detail in failure.status.details if failure.status else ():
        structured = struct_pb2.Struct()
        if detail.Unpack(structured):
            return json_format.MessageToDict(structured)
    return None


def _error_info(failure: RpcFailure) -> error_details_pb2.ErrorInfo | None:
    for detail in failure.status.details if failure.status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):  # False for other detail types
            return info
    return None
