"""Running one unary RPC of a servicer: `TokenwireError` becomes its status, anything else 500."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from server.errors import TokenwireError
from server.pipeline.context import CallInfo
from server.rpc.status import abort

log = logging.getLogger("tokenwire.rpc")

T = TypeVar("T")


async def run(context: Any, work: Callable[[CallInfo], Awaitable[T]]) -> T:
    """`work(call)` with errors translated once; headers it set travel as metadata."""
    call = CallInfo.of(context)
    try:
        result = await work(call)
    except TokenwireError as e:
        await abort(context, e, call.headers)
    except Exception:
        log.exception("unexpected error serving a call")
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise
    if call.headers:
        context.set_trailing_metadata(tuple(call.headers.items()))
    return result
