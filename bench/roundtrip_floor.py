"""Floors for `roundtrip.py`: servers that answer tokenwire's requests with fixed bytes.

    python bench/roundtrip_floor.py http --loop uvloop|asyncio
    python bench/roundtrip_floor.py grpc [--loop uvloop|asyncio] [--upstream URL]

`http` is a bare uvicorn ASGI app (httptools) returning the same JSON body,
or for `"stream": true` the same SSE events, that tokenwire returns for the
benchmark's request; `grpc` is a bare `grpc.aio` ChatService returning fixed
messages (a stream: `max_tokens` content chunks when that is more than two);
with `--upstream URL` each unary call first POSTs the benchmark's request to
URL with a session made as tokenwire's providers make theirs
(`server.providers.http.session.new_session`) and reads the whole answer,
the least a gRPC server that calls an upstream can do (`upstream.py` measures
it beside tokenwire); and each stream asks URL for a stream of `max_tokens`
chunks and writes a fixed message per JSON event read, as the events arrive,
the least a gRPC server relaying a stream can do (`streams.py`'s relay floor).
Each prints `floor: <kind> on 127.0.0.1:<port>` on stderr once listening and
runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import grpc
import roundtrip_load as load
import uvicorn
import uvloop

from server.providers.http.session import new_session
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

ID = "chatcmpl-0123456789abcdef0123456789abcdef"
HEAD = f'"id":"{ID}","object":"chat.completion","created":1795323978,"model":"fake-echo"'
JSON = (
    "{" + HEAD + ',"provider":"fake","choices":[{"index":0,"logprobs":null,"message":'
    '{"content":"hello there ","refusal":null,"role":"assistant"},"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4,'
    '"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":'
    '{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,'
    '"rejected_prediction_tokens":0}}}'
).encode()
CHUNK_HEAD = HEAD.replace("chat.completion", "chat.completion.chunk")
DELTAS = (
    '{"index":0,"finish_reason":null,"delta":{"role":"assistant","content":"hello "}}',
    '{"index":0,"finish_reason":null,"delta":{"content":"there "}}',
    '{"index":0,"finish_reason":"stop","delta":{"content":""}}',
)
EVENTS = [
    f'data: {{{CHUNK_HEAD},"provider":"fake","choices":[{d}]}}\n\n'.encode() for d in DELTAS
] + [b"data: [DONE]\n\n"]
REQUEST_ID = (b"x-request-id", b"req_0123456789abcdef0123456789abcdef")
JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(JSON)).encode()),
    REQUEST_ID,
]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    REQUEST_ID,
]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Read the body; answer with the fixed JSON, or the fixed SSE events."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if b'"stream": true' not in body:
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": JSON})
        return
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    for event in EVENTS:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def serve_http(loop: str) -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    # asyncio sets TCP_NODELAY on accepted sockets only if the listener's proto is
    # IPPROTO_TCP, which create_server leaves at 0; Linux copies it from the listener.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    config = uvicorn.Config(
        app, loop=loop, http="httptools", lifespan="off", access_log=False, log_level="warning"
    )
    print(f"floor: HTTP on 127.0.0.1:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def _response() -> chat_pb2.CreateChatCompletionResponse:
    usage = chat_pb2.Usage(prompt_tokens=2, completion_tokens=2, total_tokens=4)
    message = chat_pb2.ResponseMessage(role=message_pb2.ROLE_ASSISTANT, content="hello there ")
    choice = chat_pb2.Choice(index=0, message=message, finish_reason=chat_pb2.FINISH_REASON_STOP)
    return chat_pb2.CreateChatCompletionResponse(
        id=ID, object="chat.completion", created=1795323978, model="fake-echo",
        provider="fake", choices=[choice], usage=usage,
    )  # fmt: skip


def _chunks() -> list[chat_pb2.StreamChatCompletionResponse]:
    deltas = [
        chat_pb2.ChunkChoice(
            delta=chat_pb2.Delta(role=message_pb2.ROLE_ASSISTANT, content="hello ")
        ),
        chat_pb2.ChunkChoice(delta=chat_pb2.Delta(content="there ")),
        chat_pb2.ChunkChoice(delta=chat_pb2.Delta(), finish_reason=chat_pb2.FINISH_REASON_STOP),
    ]
    return [
        chat_pb2.StreamChatCompletionResponse(
            chunk=chat_pb2.ChatCompletionChunk(
                id=ID, object="chat.completion.chunk", created=1795323978, model="fake-echo",
                provider="fake", choices=[d],
            )
        )
        for d in deltas
    ]  # fmt: skip


class FixedChat(chat_pb2_grpc.ChatServiceServicer):
    """Answers every call with the same prebuilt messages."""

    def __init__(self) -> None:
        self.response = _response()
        self.chunks = _chunks()

    async def CreateChatCompletion(
        self, request: chat_pb2.CreateChatCompletionRequest, context: Any
    ) -> chat_pb2.CreateChatCompletionResponse:
        return self.response

    async def StreamChatCompletion(
        self, request: chat_pb2.StreamChatCompletionRequest, context: Any
    ) -> AsyncIterator[chat_pb2.StreamChatCompletionResponse]:
        """The fixed chunks; for `max_tokens` > 2, that many content chunks (a long stream,
        the per-message floor of `streams.py`)."""
        first, middle, last = self.chunks
        yield first
        for _ in range(max(request.request.parameters.max_tokens, 2) - 1):
            yield middle
        yield last


# Seconds; the fake upstream answers at once.
UPSTREAM_LIMITS = aiohttp.ClientTimeout(total=30, sock_connect=5, sock_read=30)


HEADERS = {"content-type": "application/json", "accept-encoding": "identity"}


class CallingChat(FixedChat):
    """Each call first makes one upstream call, as tokenwire's provider would; a stream
    relays the upstream's, a fixed message per event."""

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream
        self.session: aiohttp.ClientSession | None = None  # made inside the running loop

    async def _post(self, body: bytes) -> aiohttp.ClientResponse:
        if self.session is None:
            self.session = new_session()
        return await self.session.post(
            self.upstream, data=body, headers=HEADERS, timeout=UPSTREAM_LIMITS,
            allow_redirects=False,
        )  # fmt: skip

    async def CreateChatCompletion(
        self, request: chat_pb2.CreateChatCompletionRequest, context: Any
    ) -> chat_pb2.CreateChatCompletionResponse:
        answer = await self._post(load.BODY)
        try:
            while await answer.content.readany():
                pass
        finally:
            answer.close()
        return self.response

    async def StreamChatCompletion(
        self, request: chat_pb2.StreamChatCompletionRequest, context: Any
    ) -> AsyncIterator[chat_pb2.StreamChatCompletionResponse]:
        tokens = request.request.parameters.max_tokens
        body = load.STREAM_BODY[:-1] + b', "max_tokens": %d}' % tokens
        answer = await self._post(body)
        try:
            while data := await answer.content.readany():
                for _ in range(data.count(b"data: {")):  # an event split across reads: rare
                    yield self.chunks[1]
        finally:
            answer.close()


async def serve_grpc(upstream: str | None) -> None:
    server = grpc.aio.server()
    servicer = CallingChat(upstream) if upstream else FixedChat()
    chat_pb2_grpc.add_ChatServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"floor: gRPC on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["http", "grpc"])
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    p.add_argument("--upstream", help="grpc: POST each unary call to this URL first")
    args = p.parse_args()
    if args.kind == "http":
        serve_http(args.loop)
    elif args.loop == "uvloop":  # as tokenwire serves
        uvloop.run(serve_grpc(args.upstream))
    else:
        asyncio.run(serve_grpc(args.upstream))


if __name__ == "__main__":
    main()
