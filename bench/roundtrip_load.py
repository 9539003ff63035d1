"""The load generator for `roundtrip.py`, run in its own process.

`run(job)` opens `job.concurrency` clients against one target, sends a
warm-up, then sends `job.requests` more (or stops at `job.time_limit`), and
returns every latency plus the CPU the client and the watched server
processes spent while it measured.

REST goes through a minimal HTTP/1.1 keep-alive client on asyncio streams
(one connection per worker, uvloop): write the request bytes, read the head,
then `Content-Length` bytes, or for SSE the chunked body up to its last chunk.
gRPC goes through the generated stubs on one shared `grpc.aio` channel.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import grpc
import uvloop

from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2

Kind = Literal["rest", "rest-sse", "grpc", "grpc-stream", "grpc-h2load"]
Sample = tuple[int, int]  # ns to the first response byte/event/message, ns to the end
Call = Callable[[], Awaitable[Sample]]

PATH = "/v1/chat/completions"
BODY = b'{"model": "fake-echo", "messages": [{"role": "user", "content": "hello there"}]}'
STREAM_BODY = BODY[:-1] + b', "stream": true}'
EXPECTED = b"hello"  # the fake provider echoes "hello there"
WARMUP_LIMIT = 5.0  # seconds of warm-up at most
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Job:
    kind: Kind
    port: int
    concurrency: int
    requests: int
    warmup: int
    time_limit: float  # seconds for the measured phase, at most
    watch: tuple[int, ...] = ()  # server PIDs whose CPU time to record


@dataclass
class Outcome:
    first_ns: list[int] = field(default_factory=list)
    total_ns: list[int] = field(default_factory=list)
    elapsed: float = 0.0  # wall seconds of the measured phase
    client_cpu: float = 0.0  # CPU seconds of this process in the measured phase
    server_cpu: tuple[float, ...] = ()  # CPU seconds of each watched PID, same phase
    errors: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return len(self.total_ns)


class BadResponse(Exception):
    pass


def run(job: Job) -> Outcome:
    """Entry point in the load process."""
    if job.kind.startswith("rest"):
        return uvloop.run(_run(job))
    return asyncio.run(_run(job))  # grpc.aio wants the stock event loop


async def _run(job: Job) -> Outcome:
    calls, close = await _clients(job)
    try:
        warmup_limit = min(job.time_limit, WARMUP_LIMIT)
        await _phase(calls, job.warmup, time.perf_counter() + warmup_limit, Outcome())
        return await _measure(job, calls)
    finally:
        await close()


async def _measure(job: Job, calls: Sequence[Call]) -> Outcome:
    out = Outcome()
    gc.collect()
    gc.disable()
    cpu, server = time.process_time(), process_cpu(job.watch)
    start = time.perf_counter()
    try:
        await _phase(calls, job.requests, start + job.time_limit, out)
    finally:
        out.elapsed = time.perf_counter() - start
        out.client_cpu = time.process_time() - cpu
        out.server_cpu = tuple(b - a for a, b in zip(server, process_cpu(job.watch), strict=True))
        gc.enable()
    return out


async def _phase(calls: Sequence[Call], count: int, deadline: float, out: Outcome) -> None:
    """Share `count` requests among the workers, one worker per call."""
    remaining = count

    async def worker(call: Call) -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            try:
                first, total = await call()
            except (BadResponse, grpc.aio.AioRpcError, OSError) as e:
                out.errors.append(repr(e)[:200])
                if len(out.errors) > 20:
                    raise
                continue
            out.first_ns.append(first)
            out.total_ns.append(total)

    await asyncio.gather(*(worker(c) for c in calls))


def process_cpu(pids: Sequence[int]) -> tuple[float, ...]:
    """utime + stime of each process, in seconds (all its threads)."""
    out = []
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out.append((int(fields[11]) + int(fields[12])) / _TICKS)
    return tuple(out)


async def _clients(job: Job) -> tuple[list[Call], Callable[[], Awaitable[None]]]:
    if job.kind.startswith("rest"):
        return await _rest_clients(job)
    return await _grpc_clients(job)


# --- REST: HTTP/1.1 keep-alive over asyncio streams --------------------------------------


class HttpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)  # asyncio and uvloop set TCP_NODELAY themselves

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def unary(self, request: bytes) -> Sample:
        start = time.perf_counter_ns()
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        first = time.perf_counter_ns()
        body = await self.reader.readexactly(_content_length(head))
        end = time.perf_counter_ns()
        if not head.startswith(b"HTTP/1.1 200") or EXPECTED not in body:
            raise BadResponse(head[:200] + body[:200])
        return first - start, end - start

    async def sse(self, request: bytes) -> Sample:
        """Until the first `data:` event, then drain the chunked body to its end."""
        start = time.perf_counter_ns()
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
            raise BadResponse(head[:300])
        first, done = 0, False
        while True:
            size = int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                break
            if not first and b"data:" in chunk:
                first = time.perf_counter_ns()
            done = done or b"data: [DONE]" in chunk
        end = time.perf_counter_ns()
        if not first or not done:
            raise BadResponse(b"stream ended without data events or [DONE]")
        return first - start, end - start


def _content_length(head: bytes) -> int:
    at = head.lower().find(b"\r\ncontent-length:")
    if at < 0:
        raise BadResponse(b"no Content-Length: " + head[:300])
    return int(head[at + 17 : head.index(b"\r\n", at + 2)])


def http_request(port: int, body: bytes) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _rest_clients(job: Job) -> tuple[list[Call], Callable[[], Awaitable[None]]]:
    conns = [await HttpConnection.open(job.port) for _ in range(job.concurrency)]
    stream = job.kind == "rest-sse"
    request = http_request(job.port, STREAM_BODY if stream else BODY)
    calls: list[Call] = [functools.partial(c.sse if stream else c.unary, request) for c in conns]

    async def close() -> None:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    return calls, close


# --- gRPC: generated stubs on one channel ------------------------------------------------


def grpc_request() -> chat_pb2.CreateChatCompletionRequest:
    return chat_pb2.CreateChatCompletionRequest(
        model="fake-echo",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="hello there")],
    )


async def _grpc_clients(job: Job) -> tuple[list[Call], Callable[[], Awaitable[None]]]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{job.port}")
    await asyncio.wait_for(channel.channel_ready(), 10)
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    request = grpc_request()
    stream_request = chat_pb2.StreamChatCompletionRequest(request=request)

    async def unary() -> Sample:
        start = time.perf_counter_ns()
        response = await stub.CreateChatCompletion(request)
        elapsed = time.perf_counter_ns() - start
        if not response.choices:
            raise BadResponse(str(response).encode())
        return elapsed, elapsed

    async def streaming() -> Sample:
        start = time.perf_counter_ns()
        first, count = 0, 0
        async for _ in stub.StreamChatCompletion(stream_request):
            first = first or time.perf_counter_ns()
            count += 1
        if not count:
            raise BadResponse(b"empty stream")
        return first - start, time.perf_counter_ns() - start

    call = streaming if job.kind == "grpc-stream" else unary

    async def close() -> None:
        await channel.close(None)

    return [call] * job.concurrency, close
