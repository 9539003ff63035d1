"""How the gateway calls an RPC: over a gRPC channel, or in-process.

`ChannelInvoker` speaks gRPC to a server anywhere (scale-out); `gateway.in_process`
calls the servicers' handlers directly when gateway and server share a process.
Both report failures as one `RpcFailure`
carrying the gRPC code, the `google.rpc.Status` details and the trailing
metadata, and both fill a `Reply` with the response metadata the server sent
(rate-limit facts and the like, which become HTTP headers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from google.protobuf import message_factory
from google.protobuf.message import Message
from google.rpc import status_pb2

from gateway.routes import Route

Metadata = tuple[tuple[str, str], ...]
_DETAILS_KEY = "grpc-status-details-bin"


def _text(metadata: Any) -> Metadata:
    """The text entries of gRPC metadata (binary `-bin` entries are not headers)."""
    return tuple((k, v) for k, v in metadata or () if isinstance(v, str))


@dataclass
class Reply:
    """Response metadata of one call: initial, then trailing, as the server sent it."""

    metadata: list[tuple[str, str]] = field(default_factory=list)
    # Set once the server's initial metadata is in: a response may start (its status line
    # carrying these headers) before the first message from then on, and not before.
    initial: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, metadata: Any) -> None:
        self.metadata.extend(_text(metadata))

    def add_initial(self, metadata: Any) -> None:
        self.add(metadata)
        self.initial.set()


class RpcFailure(Exception):
    """An RPC that ended with a non-OK status."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        status: status_pb2.Status | None = None,
        metadata: Metadata = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.metadata = metadata  # the text part of the trailing metadata


class Invoker(Protocol):
    async def unary(
        self, route: Route, request: Message, metadata: Metadata, reply: Reply
    ) -> Message:
        """Call a unary RPC; raises `RpcFailure`."""
        ...

    def stream(
        self, route: Route, request: Message, metadata: Metadata, reply: Reply
    ) -> AsyncIterator[Message]:
        """Call a server-streaming RPC; `reply` gets the initial metadata (and its `initial`
        is set) when the server sends it, at the latest before the first message.

        Closing the iterator cancels the call.
        """
        ...


def _details(trailing: Any) -> status_pb2.Status | None:
    for key, value in trailing or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def failure_from(code: grpc.StatusCode, message: str, trailing: Any) -> RpcFailure:
    return RpcFailure(code, message, _details(trailing), _text(trailing))


class ChannelInvoker:
    """Invokes RPCs over a `grpc.aio.Channel`."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel
        self._unary: dict[str, Any] = {}
        self._stream: dict[str, Any] = {}

    def _callable(self, cache: dict[str, Any], route: Route, factory: Callable[..., Any]) -> Any:
        if route.grpc_path not in cache:
            output = message_factory.GetMessageClass(route.method.output_type)
            cache[route.grpc_path] = factory(
                route.grpc_path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=output.FromString,
            )
        return cache[route.grpc_path]

    async def unary(
        self, route: Route, request: Message, metadata: Metadata, reply: Reply
    ) -> Message:
        call = self._callable(self._unary, route, self._channel.unary_unary)(
            request, metadata=metadata
        )
        try:
            response: Message = await call
        except grpc.aio.AioRpcError as e:
            raise _failure(e) from None
        finally:
            call.cancel()  # a no-op when done; stops the server when the client left
        reply.add(await call.initial_metadata())
        reply.add(await call.trailing_metadata())
        return response

    async def stream(
        self, route: Route, request: Message, metadata: Metadata, reply: Reply
    ) -> AsyncIterator[Message]:
        call = self._callable(self._stream, route, self._channel.unary_stream)(
            request, metadata=metadata
        )
        try:
            initial = await call.initial_metadata()
            # A call already over sent only trailers (a refusal before any output): leaving
            # `initial` unset keeps a keepalive from starting a 200 before that error is read.
            if call.done():
                reply.add(initial)
            else:
                reply.add_initial(initial)
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as e:
            raise _failure(e) from None
        finally:
            call.cancel()  # a no-op when done; stops the server when the client left


def _failure(e: grpc.aio.AioRpcError) -> RpcFailure:
    return failure_from(e.code(), e.details() or "", e.trailing_metadata())
