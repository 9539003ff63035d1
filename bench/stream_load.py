"""Long streams for `streams.py`'s per-chunk scenario, run in its load process.

`cpu_per_stream` streams `count` answers of `chunks` content chunks from a
server (REST/SSE on HTTP/1.1 keep-alive, gRPC on one grpc.aio channel, or
gRPC from h2load: `grpc_h2load.stream_cpu`), 8 at a time, after a warm-up,
and returns the CPU µs the watched processes spent per stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import grpc
import grpc_h2load
import uvloop
from paced import request
from roundtrip_load import process_cpu

from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2, parameters_pb2

CONCURRENCY = 8
SHORT, LONG = 20, 200  # content chunks of the streams compared per chunk (streams, calls)
MODEL = "fake-echo"


def cpu_per_stream(kind: str, port: int, chunks: int, count: int, pids: Sequence[int]) -> float:
    if kind == "rest":
        return uvloop.run(_measure(_rest(port, chunks), count, pids))
    if kind == "grpc-h2load":
        return grpc_h2load.stream_cpu(port, chunks, count, pids, CONCURRENCY)
    return asyncio.run(_measure(_grpc(port, chunks), count, pids))  # grpc.aio: stock loop


Stream = Callable[[], Awaitable[None]]
Opener = Callable[[], Awaitable[tuple[list[Stream], Callable[[], Awaitable[None]]]]]


async def _measure(opener: Opener, count: int, pids: Sequence[int]) -> float:
    streams, close = await opener()
    try:
        await _share(streams, max(count // 10, CONCURRENCY))
        before = process_cpu(pids)
        await _share(streams, count)
        after = process_cpu(pids)
    finally:
        await close()
    return sum(b - a for a, b in zip(before, after, strict=True)) / count * 1e6


async def _share(streams: list[Stream], count: int) -> None:
    left = count

    async def worker(stream: Stream) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await stream()

    await asyncio.gather(*(worker(s) for s in streams))


def _rest(port: int, chunks: int) -> Opener:
    body = request(port, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                          "stream": True, "max_tokens": chunks})  # fmt: skip

    async def opener() -> tuple[list[Stream], Callable[[], Awaitable[None]]]:
        conns = [
            await asyncio.open_connection("127.0.0.1", port, limit=2**20)
            for _ in range(CONCURRENCY)
        ]

        def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Stream:
            async def one() -> None:
                writer.write(body)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head[:200].decode("latin-1"))
                await reader.readuntil(b"data: [DONE]\n\n\r\n0\r\n\r\n")

            return one

        async def close() -> None:
            for _, writer in conns:
                writer.close()

        return [stream(r, w) for r, w in conns], close

    return opener


def _grpc(port: int, chunks: int) -> Opener:
    async def opener() -> tuple[list[Stream], Callable[[], Awaitable[None]]]:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        message = message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="hi")
        inner = chat_pb2.CreateChatCompletionRequest(
            model=MODEL,
            messages=[message],
            parameters=parameters_pb2.GenerationParameters(max_tokens=chunks),
        )
        req = chat_pb2.StreamChatCompletionRequest(request=inner)

        async def one() -> None:
            async for _ in stub.StreamChatCompletion(req):
                pass

        async def close() -> None:
            await channel.close(None)

        return [one] * CONCURRENCY, close

    return opener
