"""The HTTP front's own limits, against a real tokenwire over raw sockets.

Slow or oversized request heads are refused (408, 431) and malformed ones get
400, each as OpenAI-shaped JSON, as `gateway.protocol` promises.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from gateway import protocol
from server.providers.fake import FakeProvider
from server.runtime import app
from tests.conftest import StartService

HEAD_TIMEOUT = 0.5
SLACK = 5.0  # bound on how long after a deadline an answer may take on a loaded machine
CHAT = b"POST /v1/chat/completions HTTP/1.1\r\nHost: tokenwire\r\n"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for item in lines:
        name, _, value = item.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(line.split(" ")[1]), headers, json.loads(body))


def assert_openai_error(answer: Answer, status: int) -> dict[str, Any]:
    assert answer.status == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["connection"] == "close"
    error: dict[str, Any] = answer.body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    return error


@pytest.fixture
async def service(start_service: StartService) -> app.Service:
    return await start_service(
        [FakeProvider()], head_timeout=HEAD_TIMEOUT, body_timeout=HEAD_TIMEOUT
    )


@pytest.fixture
async def connection(
    service: app.Service,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", service.http_port)
    yield reader, writer
    writer.close()


async def answer(reader: asyncio.StreamReader) -> Answer:
    """The whole answer: the server closes the connection after each refusal."""
    return parse(await asyncio.wait_for(reader.read(), timeout=HEAD_TIMEOUT + SLACK))


async def cut_off_while_trickling(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], sent: bytes, trickled: bytes
) -> dict[str, Any]:
    """Send `sent` at once, then `trickled` a byte every 50 ms, each in time, until the answer
    comes or the deadline and its slack have passed: the answer is a timely 408; its error."""
    reader, writer = connection
    loop = asyncio.get_running_loop()
    started = loop.time()
    writer.write(sent)
    reply = asyncio.ensure_future(answer(reader))
    for byte in trickled[: int((HEAD_TIMEOUT + SLACK) / 0.05)]:
        if reply.done():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.05)
    error = assert_openai_error(await reply, 408)
    assert error["code"] == "request_timeout"
    assert loop.time() - started < HEAD_TIMEOUT + SLACK
    return error


async def test_a_head_sent_a_byte_at_a_time_is_cut_off_at_the_deadline(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    await cut_off_while_trickling(connection, b"", CHAT + b"x-slow: " + b"a" * 1000)


async def test_a_body_sent_a_byte_at_a_time_is_cut_off_at_the_deadline(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """The head is whole and in time; its body then trickles in and never completes."""
    head = CHAT + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    error = await cut_off_while_trickling(connection, head, b" " * 1000)
    assert "body" in error["message"]


async def test_a_connection_that_sends_nothing_is_closed(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    reader, _ = connection
    assert await asyncio.wait_for(reader.read(), timeout=HEAD_TIMEOUT + SLACK) == b""


TOO_MANY = CHAT + b"".join(b"x-h%d: v\r\n" % i for i in range(101)) + b"\r\n"
TOO_BIG = CHAT + b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 4096) for i in range(17)) + b"\r\n"
TOO_LARGE = "request_header_fields_too_large"


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (TOO_MANY, 431, TOO_LARGE),
        (TOO_BIG, 431, TOO_LARGE),
        (b"GARBAGE\r\n\r\n", 400, "invalid_http_request"),
        (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", 400, "invalid_http_request"),
    ],
    ids=["101 headers", "68 KiB of headers", "not HTTP", "a header without a colon"],
)
async def test_a_refused_head_gets_an_openai_error(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    request_bytes: bytes,
    status: int,
    code: str,
) -> None:
    reader, writer = connection
    writer.write(request_bytes)
    error = assert_openai_error(await answer(reader), status)
    assert error["code"] == code


async def test_a_64_mib_header_is_refused_while_it_is_still_coming_in(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """The answer comes after a small part of the header: the server did not buffer it all."""
    reader, writer = connection
    reply = asyncio.ensure_future(answer(reader))
    writer.write(CHAT + b"x-huge: ")
    sent, piece = 0, b"v" * 65536
    try:
        while sent < 64 * 1024 * 1024 and not reply.done():
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0)  # let the answer in
            sent += len(piece)
    except ConnectionError:
        pass  # the server closed first: what the answer says
    assert_openai_error(await reply, 431)
    assert sent < 16 * 1024 * 1024


async def test_the_deadline_covers_each_head_on_a_kept_alive_connection(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    reader, writer = connection
    writer.write(b"GET /v1/models HTTP/1.1\r\nHost: tokenwire\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=SLACK)
    assert head.startswith(b"HTTP/1.1 200")
    length = int(parse(head + b"{}").headers["content-length"])
    await reader.readexactly(length)
    writer.write(b"GET /v1/models HTTP/1.1\r\n")  # the second head never ends
    assert_openai_error(await answer(reader), 408)


CHUNKED = b"transfer-encoding: chunked\r\n\r\n"  # how uvicorn ends a streamed answer's head


async def test_a_streamed_answer_sends_the_events_of_one_turn_in_one_write() -> None:
    recording = _Recording()
    transport = protocol._JoinedHead(recording, asyncio.get_running_loop())
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n" + CHUNKED
    transport.write(head)
    transport.write(b"a\r\ndata: 1\n\n\r\n")
    assert recording.writes == []
    await _next_turn()
    transport.write(b"a\r\ndata: 2\n\n\r\n")
    transport.write(b"a\r\ndata: 3\n\n\r\n0\r\n\r\n")
    assert recording.writes == [head + b"a\r\ndata: 1\n\n\r\n"]
    await _next_turn()
    assert recording.writes[1:] == [b"a\r\ndata: 2\n\n\r\na\r\ndata: 3\n\n\r\n0\r\n\r\n"]


async def test_closing_sends_the_held_events_first() -> None:
    recording = _Recording()
    transport = protocol._JoinedHead(recording, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n" + CHUNKED)
    await _next_turn()
    transport.write(b"a\r\ndata: 1\n\n\r\n")
    transport.close()
    assert recording.writes[-1] == b"a\r\ndata: 1\n\n\r\n"
    assert recording.closed


class _Recording(asyncio.Transport):
    """What a response's writes reach: the connection's transport, recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def _next_turn() -> None:
    """Return once the callbacks scheduled so far have run (call_soon is first in, first out)."""
    loop = asyncio.get_running_loop()
    turned = loop.create_future()
    loop.call_soon(turned.set_result, None)
    await turned


async def test_a_json_answer_leaves_in_one_write() -> None:
    recording = _Recording()
    transport = protocol._JoinedHead(recording, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"{}")
    transport.write(b"more")
    await _next_turn()
    assert recording.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}", b"more"]


async def test_a_head_without_a_body_yet_leaves_at_the_end_of_the_turn() -> None:
    recording = _Recording()
    transport = protocol._JoinedHead(recording, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert recording.writes == []
    await _next_turn()
    assert recording.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    transport.write(b"data: 1\n\n")
    assert recording.writes[-1] == b"data: 1\n\n"


async def test_closing_sends_a_held_head_first() -> None:
    recording = _Recording()
    transport = protocol._JoinedHead(recording, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    transport.close()
    assert recording.writes == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"]
    assert recording.closed


@pytest.mark.parametrize("head", [b"HTTP/1.1 200 OK\r\n" + CHUNKED, b"HTTP/1.1 200 OK\r\n\r\n"])
async def test_a_finished_answer_s_transport_leaves_no_garbage_cycle(head: bytes) -> None:
    """Freed by reference counting once its response is done: the cyclic GC runs rarely
    in a server (server.runtime.cli), and a cycle per response would pile up."""
    gc.collect()
    gc.disable()
    try:
        transport = protocol._JoinedHead(_Recording(), asyncio.get_running_loop())
        transport.write(head)
        transport.write(b"body")
        await _next_turn()
        del transport
        assert not [o for o in gc.get_objects() if isinstance(o, protocol._JoinedHead)]
    finally:
        gc.enable()
