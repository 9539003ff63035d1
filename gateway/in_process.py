"""Calling the servicers of this process directly, as grpc-gateway's `Register…HandlerServer`
does: no serialization and no HTTP/2 hop (~0.6 ms), with the same `Invoker` face, failures
(`RpcFailure`) and response metadata (`Reply`) as a call over a channel.

`captured` collects the handlers servicers register, through `around` (the server passes
its RPC boundary there, so both paths treat a call alike); a stream's handler returns an
async iterator of its messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, NoReturn

import grpc
from google.protobuf.message import Message

from gateway.invoker import Metadata, Reply, RpcFailure, failure_from
from gateway.routes import Route

Handler = Any  # grpc.RpcMethodHandler, whose behaviours are untyped callables


class CapturingServer:
    """Stands in for a grpc server to collect the handlers a servicer registers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        pass  # the registered handlers below carry the same methods

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        for name, handler in handlers.items():
            self.handlers[f"/{service}/{name}"] = handler


class InProcessContext:
    """The part of `grpc.aio.ServicerContext` tokenwire's servicers use."""

    def __init__(self, metadata: Metadata, peer: str, reply: Reply) -> None:
        self._metadata = metadata
        self._peer = peer
        self._reply = reply
        self._trailing: Metadata = ()

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    async def send_initial_metadata(self, metadata: Metadata) -> None:
        self._reply.add_initial(metadata)

    def set_trailing_metadata(self, metadata: Metadata) -> None:
        self._trailing = tuple(metadata)

    def finish(self) -> None:
        """The call returned: its trailing metadata becomes part of the reply."""
        self._reply.add(self._trailing)

    def time_remaining(self) -> float | None:
        return None

    def cancelled(self) -> bool:
        return False

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> NoReturn:
        raise failure_from(code, details, (*self._trailing, *trailing_metadata))

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        trailing = (*self._trailing, *status.trailing_metadata)
        raise failure_from(status.code, status.details, trailing)


AddServicer = Callable[[Any, Any], None]


def captured(
    registrations: Sequence[tuple[AddServicer, Any]],
    around: Callable[[CapturingServer], Any] = lambda server: server,
) -> dict[str, Handler]:
    """The handlers of `registrations` by gRPC path, each added through `around(server)`."""
    server = CapturingServer()
    registrar = around(server)
    for add, servicer in registrations:
        add(servicer, registrar)
    return server.handlers


class InProcessInvoker:
    """Invokes servicers in this process, with no serialization."""

    def __init__(self, handlers: Mapping[str, Handler], peer: str = "in-process") -> None:
        self._handlers = handlers
        self._peer = peer

    def _handler(self, route: Route) -> Handler:
        handler = self._handlers.get(route.grpc_path)
        if handler is None:
            raise RpcFailure(grpc.StatusCode.UNIMPLEMENTED, f"{route.grpc_path} is not served")
        return handler

    async def unary(
        self, route: Route, request: Message, metadata: Metadata, reply: Reply
    ) -> Message:
        handler = self._handler(route)
        context = InProcessContext(metadata, self._peer, reply)
        response: Message = await handler.unary_unary(request, context)
        context.finish()
        return response

    async def stream(
        self, route: Route, request: Message, metadata: Metadata, reply: Reply
    ) -> AsyncIterator[Message]:
        handler = self._handler(route)
        messages = handler.unary_stream(request, InProcessContext(metadata, self._peer, reply))
        try:
            first = await anext(messages, None)
            # As over gRPC, initial metadata precedes the first message even when the servicer
            # sent none (set once here, not per message).
            reply.initial.set()
            if first is None:
                return
            yield first
            async for message in messages:
                yield message
        finally:
            await messages.aclose()  # stops the provider when the client left
