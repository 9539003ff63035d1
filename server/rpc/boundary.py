"""What happens around every call, whichever servicer serves it and whichever path it came by.

- A request whose bytes do not parse as its message ends with INVALID_ARGUMENT
  saying so. (grpc calls the deserializer itself and answers its exception with
  UNKNOWN, before any servicer runs.)
- The call's `CallInfo` (request id, metadata, the client's address) is made
  once and is the servicer's through `CALL`; the headers stages put in it
  travel back as trailing metadata, with an error too (a stream sends them
  as initial metadata once the stages have run, `chat_service`, and as
  trailing metadata again at its end).
- A `TokenwireError` becomes its status (`server.rpc.status`); anything else is
  a bug: one log line naming the request, and INTERNAL.
- A call still running when a stop's grace period runs out ends with
  UNAVAILABLE saying the server is shutting down, rather than being cut off.

`Boundary` stands in for a server while servicers add their handlers, and wraps
each handler once there: the grpc.aio server, and the in-process gateway's
capture of the same servicers (there, a stream is handed over as an async
iterator rather than written, and the HTTP side keeps its own grace period).
A call pays no more Python calls than a servicer doing this itself would.
Handlers taking a stream of requests (only reflection's) are added as they are.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from gateway.metadata import request_id_from
from server.errors import SHUTTING_DOWN, InvalidRequest, ShuttingDown, TokenwireError
from server.pipeline.context import CallInfo
from server.rpc.status import abort

log = logging.getLogger("tokenwire.rpc")

Handler = Any  # grpc.RpcMethodHandler: its behaviours are untyped callables
# grpc.aio.ServicerContext, whose stubs lack the abort_with_status grpc has; or the gateway's
# in-process stand-in for it.
Context = Any

# The call being served: each call runs in a task of its own (grpc's, or in-process the
# HTTP request's), so this is the servicer's own call for as long as it runs.
CALL: ContextVar[CallInfo] = ContextVar("CALL")

# Peers whose `x-forwarded-for` names the real client: the in-process gateway and
# gateways on this machine.
TRUSTED_PROXIES = frozenset({"in-process", "127.0.0.1", "::1"})


class Malformed:
    """What a request that does not parse becomes, for the handler to refuse."""

    def __init__(self, error: DecodeError) -> None:
        self.error = InvalidRequest(f"The request is not a valid protobuf message: {error}")


class Calls:
    """The calls in flight, so a stop past its grace period can end them with a status."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.expired = False

    def expire(self) -> None:
        """End every call now: each answers UNAVAILABLE."""
        self.expired = True
        for task in self.tasks:
            task.cancel(SHUTTING_DOWN)  # the pipeline records it as such, not as the client's


class Boundary:
    """A server's stand-in that adds every handler wrapped (see the module doc).

    `calls` tracks the calls for the grace period; `None` on the in-process path, whose
    streams are handed over as async iterators (`streams_written=False`)."""

    def __init__(
        self,
        server: Any,
        calls: Calls | None,
        streams_written: bool = True,
        registered_methods: bool = True,
    ) -> None:
        self._server = server
        self._calls = calls
        self._written = streams_written
        self._registered = registered_methods

    def add_generic_rpc_handlers(
        self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self._server.add_generic_rpc_handlers([_Generic(h, self) for h in handlers])

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        if not self._registered:
            return  # the generic handler the stubs add first serves the same methods
        wrapped = {name: self.wrap(h) for name, h in handlers.items()}
        # grpc's own stubs lag behind it: the method exists since grpcio 1.62
        self._server.add_registered_method_handlers(service, wrapped)

    def wrap(self, handler: Handler) -> Handler:
        """`handler` with the module doc's treatment."""
        if handler.request_streaming:
            return handler
        decode = _decoder(handler.request_deserializer)
        serialize = handler.response_serializer
        if not handler.response_streaming:
            unary = _unary(handler.unary_unary, self._calls)
            return grpc.unary_unary_rpc_method_handler(unary, decode, serialize)
        behaviour = handler.unary_stream
        guarded: Callable[[Any, Context], Any]
        if inspect.iscoroutinefunction(behaviour):  # writes its own messages (health's Watch)
            guarded = _unary(behaviour, self._calls)
        elif self._written:
            guarded = _written(behaviour, self._calls)
        else:
            guarded = _iterated(behaviour)
        return grpc.unary_stream_rpc_method_handler(guarded, decode, serialize)


def in_process(server: Any) -> Boundary:
    """The boundary of the in-process path (see `gateway.in_process.captured`)."""
    return Boundary(server, None, streams_written=False)


class _Generic(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic only in the stubs
    """A generic handler whose method handlers come out wrapped (each once, then kept)."""

    def __init__(self, inner: grpc.GenericRpcHandler[Any, Any], boundary: Boundary) -> None:
        self._inner = inner
        self._boundary = boundary
        self._wrapped: dict[str, Handler] = {}

    def service(self, details: grpc.HandlerCallDetails) -> Handler:
        method: str = details.method
        if method not in self._wrapped:
            handler = self._inner.service(details)
            if handler is None:
                return None
            self._wrapped[method] = self._boundary.wrap(handler)
        return self._wrapped[method]


def _decoder(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserialize(data) if deserialize else data
        except DecodeError as e:
            return Malformed(e)

    return decode


def _enter(context: Context, calls: Calls | None) -> tuple[CallInfo, asyncio.Task[Any] | None]:
    """The call's `CallInfo`, made current, and its task once tracked in `calls`.

    Written out rather than split into helpers: this runs once per call, on every call."""
    metadata: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):  # binary (`-bin`) entries are not for the stages
            metadata[key] = value
    address = context.peer().split(":", 1)[-1]  # ipv4:127.0.0.1:5555, ipv6:[::1]:5555
    peer = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if peer in TRUSTED_PROXIES:  # a gateway's word for its client; anyone else's is ignored
        peer = metadata.get("x-forwarded-for") or peer
    call = CallInfo(request_id_from(metadata.get("x-request-id")), metadata, peer)
    CALL.set(call)
    if calls is None:
        return call, None
    task = asyncio.current_task()
    assert task is not None  # grpc runs each call in a task
    calls.tasks.add(task)
    return call, task


async def _failed(
    context: Context, call: CallInfo, error: BaseException, calls: Calls | None
) -> NoReturn:
    """End the call with `error` as a status carrying the call's response metadata."""
    if isinstance(error, asyncio.CancelledError):
        if calls is None or not calls.expired:
            raise error  # the client left, or grpc itself ends the call
        error = ShuttingDown(SHUTTING_DOWN)
    if isinstance(error, TokenwireError):
        await abort(context, error, call.headers)
    if isinstance(error, grpc.aio.AbortError):
        raise error  # a servicer (health's) ended the call itself
    log.error("unexpected error serving request %s", call.request_id, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
    raise error  # not reached: abort raises


def _unary(
    behaviour: Callable[[Any, Context], Awaitable[Any]], calls: Calls | None
) -> Callable[[Any, Context], Awaitable[Any]]:
    async def guarded(request: Any, context: Context) -> Any:
        if isinstance(request, Malformed):
            await abort(context, request.error)
        call, task = _enter(context, calls)
        try:
            response = await behaviour(request, context)
        except (Exception, asyncio.CancelledError) as e:
            await _failed(context, call, e, calls)
        finally:
            if task is not None:
                calls.tasks.discard(task)  # type: ignore[union-attr]  # tracked: calls is set
        if call.headers:  # none set is the same as an empty set, and skips a call into grpc
            context.set_trailing_metadata(tuple(call.headers.items()))
        return response

    return guarded


def _written(
    behaviour: Callable[[Any, Context], AsyncGenerator[Any, None]], calls: Calls | None
) -> Callable[[Any, Context], Awaitable[None]]:
    """A stream's messages written by hand (grpc's reader-writer form) rather than through an
    async generator around the servicer's: no extra hop per streamed message."""

    async def guarded(request: Any, context: Context) -> None:
        if isinstance(request, Malformed):
            await abort(context, request.error)
        call, task = _enter(context, calls)
        responses = behaviour(request, context)
        try:
            async for response in responses:
                await context.write(response)
            if call.headers:  # as they stand at the end (server-timing is known only then)
                context.set_trailing_metadata(tuple(call.headers.items()))
        except asyncio.CancelledError as e:
            await responses.aclose()  # stops the provider at once
            await _failed(context, call, e, calls)
        except Exception as e:
            await _failed(context, call, e, calls)
        finally:
            if task is not None:
                calls.tasks.discard(task)  # type: ignore[union-attr]  # tracked: calls is set

    return guarded


def _iterated(
    behaviour: Callable[[Any, Context], AsyncGenerator[Any, None]],
) -> Callable[[Any, Context], AsyncIterator[Any]]:
    """A stream handed over as an async iterator (the in-process path), closed with it."""

    async def guarded(request: Any, context: Context) -> AsyncIterator[Any]:
        call, _ = _enter(context, None)  # in-process: a message, never bytes that may not parse
        responses = behaviour(request, context)
        try:
            async for response in responses:
                yield response
        except Exception as e:
            await _failed(context, call, e, None)
        finally:
            await responses.aclose()  # stops the provider at once when the client left

    return guarded
