"""Real HTTP upstreams on 127.0.0.1 for the routing tests, told per test how to behave.

`Upstream` is a tiny HTTP/1.1 server (asyncio streams, keep-alive, port 0)
speaking OpenAI's chat completions (SSE, or one JSON body when the request
says `"stream": false`) and Anthropic's streaming Messages API. Each request
takes the next scripted `Reply`, else the default one. A reply can answer any
status with any headers and body, hold before any event until the test sets
an `asyncio.Event` (slow first byte, a stream that stalls), drop the
connection before an event (a whole body: halfway through), or carry
malformed events. What the upstream
received is kept (`requests`), connections are counted, and a client that goes
away while a reply is held sets `disconnected`: tests observe what the upstream
saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REASONS = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Received:
    """One request as the upstream saw it."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]
    at: float  # time.monotonic() on arrival


@dataclass(frozen=True)
class Reply:
    """What the upstream does with one request."""

    status: int = 200
    events: Sequence[bytes] = ()  # SSE events, one write each
    body: bytes | None = None  # a whole body instead (error pages, JSON)
    headers: Mapping[str, str] = field(default_factory=dict)
    hold: asyncio.Event | None = None  # wait for it before event `hold_at`
    hold_at: int = 0  # 0: before even the status line
    drop_at: int | None = None  # abort the connection before this event


class Upstream:
    """One fake upstream; `async with Upstream(default) as up:` serves on `up.port`."""

    def __init__(self, default: Reply | Callable[[Received], Reply]) -> None:
        self.default = default
        self.replies: deque[Reply] = deque()
        self.requests: list[Received] = []
        self.disconnected = asyncio.Event()
        self.connections = 0  # accepted so far: a pooled client reuses one
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The base URL an OpenAI-compatible provider is configured with."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        """The base URL an Anthropic provider is configured with."""
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.connections += 1
        try:
            while (request := await _read_request(reader)) is not None:
                self.requests.append(request)
                reply = self._next(request)
                if not await self._answer(request, reply, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    def _next(self, request: Received) -> Reply:
        if self.replies:
            return self.replies.popleft()
        return self.default if isinstance(self.default, Reply) else self.default(request)

    async def _answer(
        self,
        request: Received,
        reply: Reply,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Send `reply`; False when the connection is gone."""
        if reply.drop_at == 0 or not await self._held(reply, 0, reader):
            return False
        if reply.body is not None or not request.body.get("stream", False):
            body = reply.body if reply.body is not None else completion_json(reply.events)
            kind = "application/json" if body[:1] in (b"{", b"[") else "text/plain"
            writer.write(_head(reply, {"content-type": kind, "content-length": str(len(body))}))
            # A reply that drops its stream drops a whole body halfway.
            writer.write(body if reply.drop_at is None else body[: len(body) // 2])
            await writer.drain()
            return reply.drop_at is None
        writer.write(_head(reply, {"content-type": "text/event-stream"}))
        for i, event in enumerate(reply.events):
            if i and (reply.drop_at == i or not await self._held(reply, i, reader)):
                return False
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _held(self, reply: Reply, i: int, reader: asyncio.StreamReader) -> bool:
        """Wait for the reply's gate at event `i`; False (and noted) if the client left."""
        if reply.hold is None or reply.hold_at != i or reply.hold.is_set():
            return True
        gate = asyncio.ensure_future(reply.hold.wait())
        gone = asyncio.ensure_future(reader.read(1))  # b"": the client closed the connection
        done, _ = await asyncio.wait({gate, gone}, return_when=asyncio.FIRST_COMPLETED)
        gate.cancel()
        gone.cancel()
        if gone in done and not gone.exception() and not gone.result():
            self.disconnected.set()
            return False
        return True


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for item in filter(None, lines):
        name, _, value = item.partition(":")
        headers[name.strip().lower()] = value.strip()
    raw = await reader.readexactly(int(headers.get("content-length", "0")))
    body = json.loads(raw) if raw else {}
    return Received(line.split(" ")[1], headers, body, time.monotonic())


def _head(reply: Reply, headers: Mapping[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}"]
    all_headers = {**headers, **reply.headers}
    if "content-length" not in all_headers:
        all_headers["transfer-encoding"] = "chunked"
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def free_port() -> int:
    """A loopback port nothing listens on (the OS just handed it out and took it back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- OpenAI chat completions ----------------------------------------------------------------


def data(payload: Mapping[str, Any] | str, event: str | None = None) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()


def chunk(delta: Mapping[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    """One chat.completion.chunk event with one choice."""
    choice = {"index": 0, "delta": dict(delta), "finish_reason": finish}
    payload = {"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": "up"}
    return data({**payload, "choices": [choice], **extra})


def usage_chunk(prompt: int, completion: int) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return data({"id": "up-1", "object": "chat.completion.chunk", "choices": [], "usage": usage})


DONE = b"data: [DONE]\n\n"


def openai_text(*words: str, usage: tuple[int, int] | None = (3, 2)) -> list[bytes]:
    """A whole stream answering `words` (a usage chunk unless `usage` is None)."""
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": w}) for w in words]
    events.append(chunk({}, "stop"))
    if usage is not None:
        events.append(usage_chunk(*usage))
    return [*events, DONE]


def openai_error(
    status: int, message: str, *, retry_after: str | None = None, kind: str = "server_error"
) -> Reply:
    body = json.dumps({"error": {"message": message, "type": kind, "code": None}}).encode()
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return Reply(status, body=body, headers=headers)


def completion_json(events: Sequence[bytes]) -> bytes:
    """The non-streaming answer carrying the same text as `events` (malformed events: the
    events themselves, as malformed JSON)."""
    text = ""
    for event in events:
        payload = event.removeprefix(b"data: ").strip()
        if payload.startswith(b"{"):
            try:
                choices = json.loads(payload).get("choices", [])
            except ValueError:
                return b"".join(events)
            text += "".join(choice["delta"].get("content") or "" for choice in choices)
    message = {"role": "assistant", "content": text, "refusal": None}
    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    out = {"id": "up-1", "object": "chat.completion", "created": 1, "model": "up"}
    return json.dumps({**out, "choices": [choice], "usage": usage}).encode()


# --- Anthropic Messages -----------------------------------------------------------------------


def anthropic_event(kind: str, **payload: Any) -> bytes:
    return data({"type": kind, **payload}, event=kind)


def anthropic_text(*words: str, stop: str = "end_turn") -> list[bytes]:
    """A whole Messages stream answering `words`."""
    usage = {"input_tokens": 7, "output_tokens": 1}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "usage": usage}
    block = {"type": "text", "text": ""}
    return [
        anthropic_event("message_start", message=message),
        anthropic_event("content_block_start", index=0, content_block=block),
        anthropic_event("ping"),
        *[
            anthropic_event("content_block_delta", index=0, delta={"type": "text_delta", "text": w})
            for w in words
        ],
        anthropic_event("content_block_stop", index=0),
        anthropic_event(
            "message_delta", delta={"stop_reason": stop}, usage={"output_tokens": len(words)}
        ),
        anthropic_event("message_stop"),
    ]


@contextlib.asynccontextmanager
async def upstreams(*defaults: Reply) -> AsyncIterator[list[Upstream]]:
    """Several upstreams at once, each with its default reply."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Upstream(d)) for d in defaults]
