"""The server's one error hierarchy.

    TokenwireError                      500 INTERNAL
    ├── InvalidRequest                  400 INVALID_ARGUMENT
    │   └── UnsupportedParameter        400 INVALID_ARGUMENT  (param named)
    ├── Unprocessable                   422 INVALID_ARGUMENT  (http_status in ErrorInfo)
    ├── TooLarge                        413 INVALID_ARGUMENT  (http_status in ErrorInfo)
    ├── Unauthenticated                 401 UNAUTHENTICATED
    ├── PaymentRequired                 402 FAILED_PRECONDITION (http_status in ErrorInfo)
    ├── PermissionDenied                403 PERMISSION_DENIED
    ├── NotFound                        404 NOT_FOUND
    ├── Conflict                        409 ALREADY_EXISTS (a name taken)
    ├── RateLimited                     429 RESOURCE_EXHAUSTED (retry_after)
    ├── ShuttingDown                    503 UNAVAILABLE (grace period over)
    ├── StorageUnavailable              503 UNAVAILABLE (the database cannot be reached)
    ├── ToolFailed                      500 INTERNAL (an agent's tool: told to the model)
    └── ProviderError                   503 UNAVAILABLE
        ├── UpstreamUnavailable         503 UNAVAILABLE  (provably not processed: may be re-sent)
        ├── BadUpstream                 502 UNAVAILABLE (http_status in ErrorInfo)
        └── UpstreamTimeout             504 DEADLINE_EXCEEDED

Every error knows its gRPC code, its HTTP status and its OpenAI error `type`;
`server.rpc.status` turns one into a `google.rpc.Status` the gateway can read.
Foreign errors (aiohttp, llama.cpp, sqlite3, asyncpg) are translated into these
once, where they arise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import grpc


class TokenwireError(Exception):
    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        metadata: dict[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.metadata = dict(metadata or {})
        # Structured facts for the client (JSON values): the OpenAI error object's
        # `metadata` over REST, a `google.protobuf.Struct` status detail over gRPC.
        self.details = dict(details or {})


class InvalidRequest(TokenwireError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    type = "invalid_request_error"


class UnsupportedParameter(InvalidRequest):
    code = "unsupported_parameter"


class Unprocessable(TokenwireError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 422
    type = "invalid_request_error"


class TooLarge(TokenwireError):
    """413: a part of the request (an attached file) is larger than this server takes."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 413
    type = "invalid_request_error"
    code = "file_too_large"


class Unauthenticated(TokenwireError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PaymentRequired(TokenwireError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


class PermissionDenied(TokenwireError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403
    type = "permission_error"


class Conflict(TokenwireError):
    """409: the name is taken (gRPC ALREADY_EXISTS)."""

    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409
    type = "invalid_request_error"
    code = "already_exists"


class NotFound(TokenwireError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    type = "invalid_request_error"
    code = "not_found"


class RateLimited(TokenwireError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after
        # HTTP's Retry-After is whole seconds: round up so clients never retry too early.
        self.metadata["retry_after"] = str(max(1, math.ceil(retry_after)))


class StorageUnavailable(TokenwireError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    type = "api_error"
    code = "storage_unavailable"


# Why a call in flight was cut off at shutdown: its message, and the reason its task is
# cancelled with (which tells the pipeline the server stopped it, not the client).
SHUTTING_DOWN = (
    "The server is shutting down and its grace period for requests in flight ran out; "
    "retry the request."
)


class ShuttingDown(TokenwireError):
    """The server stops, and the grace period for calls in flight ran out."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    type = "api_error"
    code = "server_shutting_down"


class ToolFailed(TokenwireError):
    """An agent's tool could not give a result (bad arguments, refused, its server gone):
    the loop tells the model so in the tool's result and records it."""

    code = "tool_failed"


class ProviderError(TokenwireError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    type = "api_error"
    code = "provider_unavailable"


class UpstreamUnavailable(ProviderError):
    """The upstream provably did not process the request: no connection, the request not
    written in full, or it said so (503, overloaded). Sending it again cannot duplicate a
    generation; after any other `ProviderError` it might."""


class BadUpstream(ProviderError):
    http_status = 502
    code = "bad_upstream"


class UpstreamTimeout(ProviderError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504
    code = "upstream_timeout"
