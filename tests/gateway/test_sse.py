"""SseResponse alone: events, keepalives when a stream goes quiet, errors, the client leaving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import orjson
import pytest
from google.protobuf.message import Message

from gateway.errors import GatewayError
from gateway.http import ASGIMessage
from gateway.invoker import RpcFailure
from gateway.sse import DONE, KEEPALIVE, SseResponse
from tests.routing.test_fallback import eventually
from tokenwire.chat.v1 import chat_pb2


class Client:
    """An ASGI client that records what it is sent and leaves when told to."""

    def __init__(self) -> None:
        self.sent: list[ASGIMessage] = []
        self.beat = asyncio.Event()  # set at the first keepalive
        self.gone = asyncio.Event()

    async def send(self, message: ASGIMessage) -> None:
        self.sent.append(message)
        if message.get("body") == KEEPALIVE:
            self.beat.set()

    async def receive(self) -> ASGIMessage:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


def chunk(text: str) -> Message:
    return chat_pb2.CreateChatCompletionResponse(id=text)


def render(message: Message) -> object:
    assert isinstance(message, chat_pb2.CreateChatCompletionResponse)
    return {"id": message.id}


def response(
    messages: AsyncIterator[Message], keepalive: float, metadata_in: asyncio.Event | None = None
) -> SseResponse:
    if metadata_in is None:
        metadata_in = asyncio.Event()
        metadata_in.set()
    return SseResponse(
        messages,
        render,
        lambda: [],
        metadata_in,
        keepalive,
        lambda failure: GatewayError(500, failure.message),
    )


async def run(sse: SseResponse, client: Client) -> None:
    await asyncio.wait_for(sse(client.send, client.receive), timeout=5)


async def test_a_quick_stream_is_its_events_then_done() -> None:
    async def messages() -> AsyncIterator[Message]:
        yield chunk("a")
        yield chunk("b")

    client = Client()
    await run(response(messages(), keepalive=5), client)
    assert client.sent[0] == {"type": "http.response.start", "status": 200, "headers": []}
    assert client.bodies() == [b'data: {"id":"a"}\n\n', b'data: {"id":"b"}\n\n', DONE, b""]


async def test_a_quiet_stretch_after_the_first_event_gets_keepalives() -> None:
    client = Client()

    async def messages() -> AsyncIterator[Message]:
        yield chunk("a")
        await client.beat.wait()
        yield chunk("b")

    await run(response(messages(), keepalive=0.02), client)
    bodies = client.bodies()
    assert bodies[0] == b'data: {"id":"a"}\n\n'
    assert set(bodies[1:-3]) == {KEEPALIVE}
    assert bodies[-3:] == [b'data: {"id":"b"}\n\n', DONE, b""]


async def quiet_for(intervals: int, keepalive: float) -> None:
    """Until `intervals` keepalive intervals have passed (bounded polling of the loop clock)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await eventually(lambda: loop.time() - start >= intervals * keepalive)


async def test_a_slow_first_event_gets_keepalives_only_once_the_metadata_is_in() -> None:
    client, metadata_in = Client(), asyncio.Event()

    async def messages() -> AsyncIterator[Message]:
        await quiet_for(3, 0.01)
        assert client.sent == []  # the status line would carry no response metadata yet
        metadata_in.set()
        await client.beat.wait()
        yield chunk("a")

    await run(response(messages(), 0.01, metadata_in), client)
    assert client.sent[0]["type"] == "http.response.start"
    assert client.bodies()[0] == KEEPALIVE
    assert client.bodies()[-3:] == [b'data: {"id":"a"}\n\n', DONE, b""]


async def test_an_error_before_the_metadata_is_a_real_error_however_slow() -> None:
    async def messages() -> AsyncIterator[Message]:
        await quiet_for(3, 0.01)
        raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
        yield chunk("never")

    client = Client()
    with pytest.raises(GatewayError) as caught:
        await run(response(messages(), 0.01, asyncio.Event()), client)
    assert caught.value.message == "slow down"
    assert client.sent == []  # the app answers with the error's own status


async def test_an_error_after_the_first_event_is_an_error_event() -> None:
    async def messages() -> AsyncIterator[Message]:
        yield chunk("a")
        raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "gone away")

    client = Client()
    await run(response(messages(), keepalive=5), client)
    error = GatewayError(500, "gone away").body()
    assert client.bodies()[1:] == [b"data: " + orjson.dumps(error) + b"\n\n", b""]


async def test_the_client_leaving_closes_the_stream() -> None:
    client = Client()
    closed = asyncio.Event()

    async def messages() -> AsyncIterator[Message]:
        try:
            yield chunk("a")
            client.gone.set()
            await asyncio.Event().wait()  # never set: only the disconnect ends this
            yield chunk("b")
        finally:
            closed.set()

    await run(response(messages(), keepalive=5), client)
    assert closed.is_set()
    assert client.bodies() == [b'data: {"id":"a"}\n\n']  # no end: the client is gone
