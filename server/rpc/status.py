"""`TokenwireError` into a gRPC status the gateway (or any client) can read.

The status carries a `google.rpc.ErrorInfo`: `reason` is OpenAI's error
`code`, and its metadata holds `type`, `param`, `http_status` (for statuses
gRPC has no code for: 402, 422, 502) and `retry_after`. An error's structured
`details` follow as a `google.protobuf.Struct`.
"""

from __future__ import annotations

from typing import NoReturn, Protocol

import grpc
from google.protobuf import any_pb2, struct_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.errors import TokenwireError

DOMAIN = "tokenwire"


class AbortableContext(Protocol):
    async def abort_with_status(self, status: grpc.Status) -> NoReturn: ...


def to_status(error: TokenwireError) -> grpc.Status:
    metadata = {"type": error.type, "http_status": str(error.http_status), **error.metadata}
    if error.param:
        metadata["param"] = error.param
    info = error_details_pb2.ErrorInfo(reason=error.code or "", domain=DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    details = [detail]
    if error.details:  # beside ErrorInfo: what the gateway answers as `error.metadata`
        structured = struct_pb2.Struct()
        structured.update(error.details)
        details.append(any_pb2.Any())
        details[-1].Pack(structured)
    status = status_pb2.Status(
        code=error.grpc_code.value[0], message=error.message, details=details
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result


async def abort(
    context: AbortableContext, error: TokenwireError, headers: dict[str, str] | None = None
) -> NoReturn:
    """End the call with `error`; `headers` travel as trailing metadata beside the details."""
    status = to_status(error)
    if headers:
        status = _Status(status.code, status.details, (*status.trailing_metadata, *headers.items()))
    await context.abort_with_status(status)


class _Status(grpc.Status):
    """grpc.Status is an abstract interface: this is its plain value."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple) -> None:  # type: ignore[type-arg]
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata
