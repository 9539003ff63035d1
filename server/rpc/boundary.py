"""What the gRPC server does around every call, whichever servicer serves it.

- A request whose bytes do not parse as its message ends with INVALID_ARGUMENT
  saying so. (grpc calls the deserializer itself and answers its exception with
  UNKNOWN, before any servicer runs.)
- A call still running when a stop's grace period runs out ends with
  UNAVAILABLE saying the server is shutting down, rather than being cut off.

`Boundary` stands in for the server while servicers add their handlers, and
wraps each handler once there: a call pays an isinstance check and a set
insertion, nothing per streamed message. Handlers taking a stream of requests
(only reflection's) are added as they are.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from server.errors import SHUTTING_DOWN, InvalidRequest, ShuttingDown
from server.rpc.status import abort

Handler = Any  # grpc.RpcMethodHandler: its behaviours are untyped callables


class Malformed:
    """What a request that does not parse becomes, for the handler to refuse."""

    def __init__(self, error: DecodeError) -> None:
        self.error = InvalidRequest(f"The request is not a valid protobuf message: {error}")


class Calls:
    """The calls in flight, so a stop past its grace period can end them with a status."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.expired = False

    def expire(self) -> None:
        """End every call now: each answers UNAVAILABLE (see `_ending`)."""
        self.expired = True
        for task in self._tasks:
            task.cancel(SHUTTING_DOWN)  # the pipeline records it as such, not as the client's

    def _enter(self) -> asyncio.Task[Any]:
        task = asyncio.current_task()
        assert task is not None  # grpc runs each call in a task
        self._tasks.add(task)
        return task

    def _leave(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)


class Boundary:
    """A grpc server's stand-in that adds every handler wrapped (see the module doc)."""

    def __init__(self, server: grpc.aio.Server, calls: Calls) -> None:
        self._server = server
        self._calls = calls

    def add_generic_rpc_handlers(
        self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self._server.add_generic_rpc_handlers([_Generic(h, self._calls) for h in handlers])

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        wrapped = {name: wrap(h, self._calls) for name, h in handlers.items()}
        # grpc's own stubs lag behind it: the method exists since grpcio 1.62
        self._server.add_registered_method_handlers(service, wrapped)  # type: ignore[attr-defined]


class _Generic(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic only in the stubs
    """A generic handler whose method handlers come out wrapped (each once, then kept)."""

    def __init__(self, inner: grpc.GenericRpcHandler[Any, Any], calls: Calls) -> None:
        self._inner = inner
        self._calls = calls
        self._wrapped: dict[str, Handler] = {}

    def service(self, details: grpc.HandlerCallDetails) -> Handler:
        method: str = details.method
        if method not in self._wrapped:
            handler = self._inner.service(details)
            if handler is None:
                return None
            self._wrapped[method] = wrap(handler, self._calls)
        return self._wrapped[method]


def wrap(handler: Handler, calls: Calls) -> Handler:
    """`handler` refusing malformed requests and ending with a status at shutdown."""
    if handler.request_streaming:
        return handler
    decode = _decoder(handler.request_deserializer)
    serialize = handler.response_serializer
    if not handler.response_streaming:
        unary = _guarded(handler.unary_unary, _returned, calls)
        return grpc.unary_unary_rpc_method_handler(unary, decode, serialize)
    behaviour = handler.unary_stream
    # A coroutine writes its own messages (health's Watch); a generator's are written here.
    run = _returned if inspect.iscoroutinefunction(behaviour) else _written
    return grpc.unary_stream_rpc_method_handler(_guarded(behaviour, run, calls), decode, serialize)


def _decoder(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserialize(data) if deserialize else data
        except DecodeError as e:
            return Malformed(e)

    return decode


# grpc.aio.ServicerContext, whose stubs lack the abort_with_status grpc has.
Context = Any


def _guarded(
    behaviour: Callable[..., Any], run: Callable[[Any, Context], Awaitable[Any]], calls: Calls
) -> Callable[..., Awaitable[Any]]:
    async def guarded(request: Any, context: Context) -> Any:
        if isinstance(request, Malformed):
            await abort(context, request.error)
        task = calls._enter()
        try:
            return await run(behaviour(request, context), context)
        except asyncio.CancelledError:
            if not calls.expired:
                raise  # the client left, or grpc itself ends the call
            await abort(context, ShuttingDown(SHUTTING_DOWN))
        finally:
            calls._leave(task)

    return guarded


async def _returned(call: Awaitable[Any], context: Context) -> Any:
    return await call


async def _written(responses: AsyncGenerator[Any, None], context: Context) -> None:
    """A generator's messages written by hand (grpc's reader-writer form) rather than through
    an async generator around the servicer's: no extra hop per streamed message."""
    try:
        async for response in responses:
            await context.write(response)
    except asyncio.CancelledError:
        await responses.aclose()  # stops the provider at once
        raise
