"""A paced fake upstream and the load clients of `streams.py`'s many-streams scenarios.

The upstream (`python bench/paced.py --serve`, announcing its port on stderr)
is a bare HTTP/1.1 keep-alive server on asyncio protocols and uvloop, cheap
enough to stand beside thousands of streams on two cores:

- `"stream": true`: `max_tokens` (default 64) content chunks, `--interval`
  seconds apart from the request's arrival, each chunk's content the
  `time.monotonic()` it left at (`t=<seconds> `), then a usage chunk and
  `[DONE]`. The clock is the machine's, so a client reading the content
  through tokenwire knows how long each frame took to reach it;
- otherwise the whole answer, `--delay` seconds after the request.

`paced_streams` and `sustained` run in a load process of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop

ANNOUNCE = "paced upstream: HTTP on 127.0.0.1:"
MODEL = "fake-paced"
STAMP = b'"content":"t='

_HEAD = b'"id":"up-1","created":1795323978,"model":"' + MODEL.encode() + b'"'
_CHUNK = b'{"object":"chat.completion.chunk",' + _HEAD + b',"choices":['
COMPLETION = (
    b'{"object":"chat.completion",' + _HEAD + b',"choices":[{"index":0,"message":'
    b'{"role":"assistant","content":"hello there "},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}'
)
JSON_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n" % len(COMPLETION)
)
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
_END = (
    _CHUNK + b'{"index":0,"delta":{},"finish_reason":"stop"}]}',
    _CHUNK + b'],"usage":{"prompt_tokens":2,"completion_tokens":64,"total_tokens":66}}',
)


def _frame(data: bytes) -> bytes:
    event = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _stamped() -> bytes:
    content = b'{"index":0,"delta":{"content":"t=%.6f "},"finish_reason":null}]}'
    return _frame(_CHUNK + content % time.monotonic())


_TAIL = b"".join(_frame(e) for e in _END) + _frame(b"[DONE]") + b"0\r\n\r\n"


class PacedUpstream(asyncio.Protocol):
    """One connection: requests one at a time (keep-alive, no pipelining)."""

    interval = 0.02
    delay = 0.02

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: Any = None  # uvloop's transports are no asyncio.Transport
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = content_length(self.buffer[: end + 2])
        if len(self.buffer) < end + 4 + length:
            return
        body, self.buffer = self.buffer[end + 4 : end + 4 + length], self.buffer[end + 4 + length :]
        request = orjson.loads(body)
        if request.get("stream"):
            self._write(SSE_HEAD + _stamped())
            self.loop.call_later(self.interval, self._next, (request.get("max_tokens") or 64) - 1)
        else:
            self.loop.call_later(self.delay, self._write, JSON_HEAD + COMPLETION)

    def _next(self, left: int) -> None:
        if left <= 0:
            self._write(_TAIL)
            return
        self._write(_stamped())
        self.loop.call_later(self.interval, self._next, left - 1)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def serve(interval: float, delay: float) -> None:
    PacedUpstream.interval, PacedUpstream.delay = interval, delay
    server = await asyncio.get_running_loop().create_server(
        PacedUpstream, "127.0.0.1", 0, backlog=4096
    )
    print(f"{ANNOUNCE}{server.sockets[0].getsockname()[1]}", file=sys.stderr, flush=True)
    await server.serve_forever()


# --- load: many paced streams -------------------------------------------------------------


def request(port: int, body: dict[str, object]) -> bytes:
    raw = orjson.dumps(body)
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    ).encode() + raw


@dataclass
class StreamsOutcome:
    first_ms: list[float] = field(default_factory=list)  # request sent -> first frame
    frame_ms: list[float] = field(default_factory=list)  # frame left upstream -> read here
    streams: int = 0
    errors: list[str] = field(default_factory=list)


def paced_streams(port: int, streams: int, seconds: float, frames: int) -> StreamsOutcome:
    """`streams` connections, each streaming back to back for `seconds` (starts spread over
    the first second); each connection's first stream is warm-up (connecting, the herd)."""
    return uvloop.run(_paced(port, streams, seconds, frames))


async def _paced(port: int, streams: int, seconds: float, frames: int) -> StreamsOutcome:
    out = StreamsOutcome()
    body = request(port, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                          "stream": True, "max_tokens": frames})  # fmt: skip
    end = time.monotonic() + seconds

    async def client(i: int) -> None:
        await asyncio.sleep(i / streams)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as e:
            out.errors.append(repr(e))
            return
        try:
            measured = False
            while time.monotonic() < end:
                await _one_stream(reader, writer, body, out, measured)
                measured = True
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            out.errors.append(repr(e)[:200])
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(streams)))
    return out


async def _one_stream(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    body: bytes,
    out: StreamsOutcome,
    measured: bool,
) -> None:
    sent = time.monotonic()
    writer.write(body)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(head[:200].decode("latin-1"))
    first, tail, done = True, b"", False
    while not done:
        data = await reader.read(65536)
        if not data:
            raise ValueError("the stream ended early")
        now = time.monotonic()
        chunk = tail + data
        done = chunk.endswith(b"0\r\n\r\n") and b"[DONE]" in chunk[-64:]
        keep, at = max(0, len(chunk) - 64), chunk.find(STAMP)
        while at >= 0:
            stop = chunk.find(b" ", at)
            if stop < 0:  # cut off by this read: parsed with the next
                keep = at
                break
            if measured:
                if first:
                    out.first_ms.append((now - sent) * 1000)
                out.frame_ms.append((now - float(chunk[at + len(STAMP) : stop])) * 1000)
            first, keep = False, max(keep, stop)
            at = chunk.find(STAMP, stop)
        tail = chunk[keep:]
    out.streams += measured


# --- load: unary calls to a slow upstream -------------------------------------------------


@dataclass
class LoadOutcome:
    total_ms: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    timeouts: int = 0
    errors: list[str] = field(default_factory=list)


def sustained(port: int, concurrency: int, seconds: float, timeout: float) -> LoadOutcome:
    """`concurrency` keep-alive connections calling as fast as answers come, for `seconds`;
    a call unanswered after `timeout` seconds counts as a timeout (its connection is
    replaced)."""
    return uvloop.run(_sustained(port, concurrency, seconds, timeout))


async def _sustained(port: int, concurrency: int, seconds: float, timeout: float) -> LoadOutcome:
    out = LoadOutcome()
    body = request(port, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    start = time.monotonic()
    end = start + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < end:
            sent = time.monotonic()
            try:
                await asyncio.wait_for(_unary(reader, writer, body), timeout)
            except TimeoutError:
                out.timeouts += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                out.errors.append(repr(e)[:200])
                return
            out.total_ms.append((time.monotonic() - sent) * 1000)
        writer.close()

    await _all(client, concurrency)
    out.elapsed = time.monotonic() - start
    return out


async def _unary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
    writer.write(body)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(head[:200].decode("latin-1"))
    await reader.readexactly(content_length(head))


def content_length(head: bytes) -> int:
    """The Content-Length of a head whose last line ends in CRLF (0 without one)."""
    at = head.lower().find(b"\r\ncontent-length:")
    return int(head[at + 17 : head.index(b"\r\n", at + 2)]) if at >= 0 else 0


async def _all(client: Callable[[], Awaitable[None]], n: int) -> None:
    results = await asyncio.gather(*(client() for _ in range(n)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if len(failed) == n:
        raise failed[0]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * p / 100)) - 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--serve", action="store_true", required=True)
    p.add_argument("--interval", type=float, default=0.02, help="seconds between frames")
    p.add_argument("--delay", type=float, default=0.02, help="seconds before a whole answer")
    args = p.parse_args()
    uvloop.run(serve(args.interval, args.delay))


if __name__ == "__main__":
    main()
