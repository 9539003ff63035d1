"""A provider's HTTP exchange (its aiohttp session) against raw HTTP/1.1 servers on 127.0.0.1.

Each server is `asyncio.start_server` writing bytes the test chose, so what
goes over the wire is exact: request heads, connection counts, how many POSTs
arrived, when a connection was closed, are observed from the server's side.
What a test asserts is what a provider promises: limits, which failures may be
sent again, bounded response heads, what follows a response, proxies and TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import trustme

from server.errors import (
    BadUpstream,
    ProviderError,
    TokenwireError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from server.providers.base import Delta, Event, FinishReason, GenerationRequest, Message, Usage
from server.providers.http.config import UpstreamConfig
from server.providers.http.openai import OpenAICompatProvider
from server.providers.http.session import new_session
from tests.providers.http.raw_server import http_chunk, refused_port, serving

T = TypeVar("T")

WAIT = 5.0  # seconds: the bound on anything a test waits for
KEY = "sk-exchange-SECRET"
KiB = 1024
MiB = 1024 * KiB

STREAMED = GenerationRequest(model="m", messages=(Message(role="user", content="hi"),))
UNARY = dataclasses.replace(STREAMED, streamed=False)
ANSWER = json.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
).encode()
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(ANSWER),
    ANSWER,
)
ANSWERED = [Delta(content="ok", finish_reason=FinishReason.STOP), Usage(1, 1)]
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def event(text: str) -> bytes:
    payload = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return http_chunk(f"data: {json.dumps(payload)}\n\n".encode())


STREAM_END = (
    http_chunk(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    + http_chunk(b"data: [DONE]\n\n")
    + b"0\r\n\r\n"
)


async def within(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(WAIT):
        return await awaitable


# --- the server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    line: str
    headers: dict[str, str]  # names lower-cased, repeats joined with ", "
    head: bytes  # as received, up to and including the blank line
    body: bytes


@dataclass
class Peer:
    """One connection the server accepted, as its handler drives it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    index: int  # 0 for the server's first connection
    requests: list[Request]  # the server's, shared by all its peers
    saw_eof: asyncio.Event = field(default_factory=asyncio.Event)

    async def request(self, *, body: bool = True) -> Request | None:
        """The next request on this connection (its head only unless `body`), or None once
        the client closed it."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.saw_eof.set()
            return None
        line, *fields = head.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
        headers: dict[str, str] = {}
        for name, _, value in (f.partition(":") for f in fields):
            key, text = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        length = int(headers.get("content-length", "0")) if body else 0
        request = Request(line, headers, head, await self.reader.readexactly(length))
        self.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        """Write `data`; ConnectionError (and `saw_eof` set) once the client has closed."""
        if self.writer.is_closing():  # uvloop refuses writes to a transport already lost
            self.saw_eof.set()
            raise ConnectionResetError("the client closed the connection")
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError:
            self.saw_eof.set()
            raise

    async def until_eof(self) -> None:
        """Read (and drop) whatever comes until the client closes the connection."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(64 * KiB):
                pass
        self.saw_eof.set()

    async def hang_up(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    def reset(self) -> None:
        """End the connection with an RST, not a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Handler = Callable[[Peer], Awaitable[None]]


@dataclass
class Upstream:
    port: int
    scheme: str = "http"
    peers: list[Peer] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    @property
    def connections(self) -> int:
        return len(self.peers)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/v1"


@contextlib.asynccontextmanager
async def upstream(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Upstream]:
    """A server on 127.0.0.1:0 running `handler` on each connection it accepts (over TLS
    with `tls`)."""
    state = Upstream(port=0, scheme="https" if tls else "http")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer, len(state.peers), state.requests)
        state.peers.append(peer)
        await handler(peer)

    async with serving(serve, tls) as port:
        state.port = port
        yield state


def answering(response: bytes = OK) -> Handler:
    """Answer every request on the connection with `response`, keeping it open."""

    async def handle(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(response)

    return handle


def per_connection(*handlers: Handler) -> Handler:
    """The first connection gets the first handler, and so on; the last one repeats."""

    async def handle(peer: Peer) -> None:
        await handlers[min(peer.index, len(handlers) - 1)](peer)

    return handle


# --- the provider --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def provider_at(
    url: str, session: Any = None, tls: ssl.SSLContext | None = None, **settings: Any
) -> AsyncIterator[OpenAICompatProvider]:
    config = UpstreamConfig(name="up", base_url=url, api_key=KEY, **settings)
    made = OpenAICompatProvider(config, session, tls)
    try:
        yield made
    finally:
        await made.aclose()


async def collect(
    provider: OpenAICompatProvider, request: GenerationRequest = UNARY
) -> list[Event]:
    async with asyncio.timeout(WAIT):
        return [e async for e in provider.stream(request)]


async def failure(provider: OpenAICompatProvider, request: GenerationRequest = UNARY) -> Any:
    with pytest.raises(TokenwireError) as info:
        await collect(provider, request)
    return info.value


# --- keep-alive and the request head -------------------------------------------------------


async def test_calls_reuse_one_connection_and_send_one_value_per_header() -> None:
    headers = {"User-Agent": "custom/1", "X-Title": "tokenwire"}
    async with upstream(answering()) as up, provider_at(up.base_url, headers=headers) as p:
        assert await collect(p) == ANSWERED
        assert await collect(p) == ANSWERED
    assert up.connections == 1
    first, second = up.requests
    assert first.line == "POST /v1/chat/completions HTTP/1.1"
    assert first.headers == {
        "host": f"127.0.0.1:{up.port}",
        "user-agent": "custom/1",  # the configured value replaces tokenwire's, once
        "accept-encoding": "identity",
        "accept": "application/json",
        "content-type": "application/json",
        "authorization": f"Bearer {KEY}",
        "x-title": "tokenwire",
        "content-length": str(len(first.body)),
    }
    assert first.head.lower().count(b"user-agent") == 1
    assert json.loads(first.body)["messages"] == [{"role": "user", "content": "hi"}]
    assert second.headers == first.headers  # no cookie, nothing else picked up


async def test_a_stream_abandoned_early_closes_its_connection() -> None:
    async def unfinished(peer: Peer) -> None:
        await peer.request()
        await peer.send(STREAM_HEAD + event("a"))
        await peer.until_eof()

    async with (
        upstream(per_connection(unfinished, answering())) as up,
        provider_at(up.base_url) as p,
    ):
        stream = p.stream(STREAMED)
        assert await within(anext(stream)) == Delta(content="a")
        await stream.aclose()
        await within(up.peers[0].saw_eof.wait())
        assert await collect(p) == ANSWERED
    assert up.connections == 2


# --- what may be sent again (finding 5) ----------------------------------------------------


async def answer_then_read_and_end(peer: Peer, end: Callable[[Peer], Awaitable[None]]) -> None:
    """Answer one request; read the next one whole, then end the connection unanswered."""
    await peer.request()
    await peer.send(OK)
    await peer.request()
    await end(peer)


async def hang_up(peer: Peer) -> None:
    await peer.hang_up()


async def reset(peer: Peer) -> None:
    peer.reset()


@pytest.mark.parametrize("end", [hang_up, reset], ids=["closed", "reset"])
async def test_a_post_read_in_full_on_a_kept_alive_connection_is_never_sent_again(
    end: Callable[[Peer], Awaitable[None]],
) -> None:
    async def first(peer: Peer) -> None:
        await answer_then_read_and_end(peer, end)

    async with upstream(per_connection(first, answering())) as up, provider_at(up.base_url) as p:
        assert await collect(p) == ANSWERED
        error = await failure(p)
    assert isinstance(error, ProviderError)
    assert not isinstance(error, UpstreamUnavailable)  # the upstream may have acted on it
    assert len(up.requests) == 2  # one POST per call: the second was not re-sent
    assert up.connections == 1


async def test_a_refused_connection_is_upstream_unavailable() -> None:
    async with provider_at(f"http://127.0.0.1:{refused_port()}/v1") as p:
        error = await failure(p)
    assert type(error) is UpstreamUnavailable
    assert error.message == "cannot connect to up"


async def test_a_request_reset_before_it_was_written_whole_is_upstream_unavailable() -> None:
    """The upstream read only the head and reset the connection: it cannot have acted."""

    async def head_only(peer: Peer) -> None:
        await peer.request(body=False)
        peer.reset()

    big = GenerationRequest(model="m", messages=(Message(role="user", content="x" * 64 * MiB),))
    async with upstream(head_only) as up, provider_at(up.base_url) as p:
        error = await failure(p, big)
    assert type(error) is UpstreamUnavailable
    assert error.message == "lost the connection to up before the request was sent"
    assert len(up.requests) == 1


# --- limits (finding 7) --------------------------------------------------------------------


async def endless(peer: Peer) -> None:
    """A stream that never goes silent and never ends."""
    await peer.request()
    await peer.send(STREAM_HEAD)
    with contextlib.suppress(ConnectionError):
        for _ in range(1000):  # 20 s at most: the limits under test end it long before
            await peer.send(event("a"))
            await asyncio.sleep(0.02)  # pacing the stream, not synchronising
    await peer.until_eof()


async def whole_stream(peer: Peer) -> None:
    while await peer.request() is not None:
        await peer.send(STREAM_HEAD + event("ok") + STREAM_END)


async def test_stalled_consumers_cannot_hold_the_pool_past_the_total_limit() -> None:
    total = 1.0
    handler = per_connection(endless, endless, whole_stream)
    async with (
        upstream(handler) as up,
        provider_at(up.base_url, pool_size=2, total_timeout=total) as p,
    ):
        stalled = [p.stream(STREAMED) for _ in range(2)]
        for stream in stalled:  # each holds one of the pool's two connections, then stops
            assert await within(anext(stream)) == Delta(content="a")
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            outcome: list[Event] | TokenwireError = await collect(p, STREAMED)
        except UpstreamTimeout as error:
            outcome = error
        # An answer or a 504 by the limit (with slack for a busy machine), not a hang.
        assert loop.time() - started < total + 1.0
        assert outcome == [
            Delta(content="ok"),
            Delta(finish_reason=FinishReason.STOP),
            Usage(1, 1, estimated=True),
        ] or (isinstance(outcome, UpstreamTimeout))
        # The stalled streams' connections were closed at their deadline, unread.
        await within(asyncio.gather(*(peer.saw_eof.wait() for peer in up.peers[:2])))
        with pytest.raises(UpstreamTimeout, match="up did not finish within 1 s"):
            await within(anext(stalled[0]))
        for stream in stalled:
            await stream.aclose()


async def test_waiting_for_a_pooled_connection_ends_at_the_total_limit() -> None:
    """Two providers share a session of one connection: the second waits, within its total."""
    async with upstream(endless) as up:
        session = new_session(pool_size=1)
        try:
            async with (
                provider_at(up.base_url, session) as holder,
                provider_at(up.base_url, session, total_timeout=0.3) as waiter,
            ):
                stream = holder.stream(STREAMED)
                assert await within(anext(stream)) == Delta(content="a")
                loop = asyncio.get_running_loop()
                started = loop.time()
                error = await failure(waiter, STREAMED)
                assert loop.time() - started < 0.3 + 1.0  # the limit, and slack for a busy machine
                await stream.aclose()
        finally:
            await session.close()
    assert type(error) is UpstreamTimeout
    assert error.message == "up did not finish within 0.3 s"
    assert len(up.requests) == 1  # the waiter never reached the upstream


async def test_a_stream_that_never_goes_silent_ends_at_the_total_limit() -> None:
    async with upstream(endless) as up, provider_at(up.base_url, total_timeout=0.3) as p:
        seen: list[Event] = []
        with pytest.raises(UpstreamTimeout, match=r"did not finish within 0\.3 s"):
            async with asyncio.timeout(WAIT):
                async for e in p.stream(STREAMED):
                    seen.append(e)
        assert seen  # the upstream was never silent for the first-byte limit
        await within(up.peers[0].saw_eof.wait())


async def test_a_silent_upstream_ends_at_the_first_byte_limit_and_is_closed() -> None:
    async def silent(peer: Peer) -> None:
        await peer.request()
        await peer.until_eof()

    async with upstream(silent) as up, provider_at(up.base_url, first_byte_timeout=0.2) as p:
        error = await failure(p)
        await within(up.peers[0].saw_eof.wait())
    assert type(error) is UpstreamTimeout
    assert error.message == "up sent nothing within 0.2 s"


# --- response heads (finding 10) -----------------------------------------------------------


HEADS = {
    "200,000 header lines": b"HTTP/1.1 200 OK\r\n" + b"x-h: v\r\n" * 200_000,
    "one 16 MiB header": b"HTTP/1.1 200 OK\r\nx-h: " + b"v" * (16 * MiB) + b"\r\n",
}


@pytest.mark.parametrize("head", HEADS.values(), ids=HEADS.keys())
async def test_an_oversized_response_head_is_bad_upstream_at_once(head: bytes) -> None:
    async def flood(peer: Peer) -> None:
        await peer.request()
        with contextlib.suppress(ConnectionError):
            await peer.send(head + b"content-length: 2\r\n\r\nok")
        await peer.until_eof()

    async with upstream(flood) as up, provider_at(up.base_url) as p:
        loop = asyncio.get_running_loop()
        started = loop.time()
        error = await failure(p)
        assert loop.time() - started < 2.0
        await within(up.peers[0].saw_eof.wait())  # and the connection is dropped
    assert type(error) is BadUpstream
    assert error.message == "up garbled its response"


# --- bytes after a response (finding 11) ---------------------------------------------------


TRAILERS = {
    "garbage": b"INJECTED!",
    "a response nobody asked for": b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nINJECTED!",
}


@pytest.mark.parametrize("trailer", TRAILERS.values(), ids=TRAILERS.keys())
async def test_bytes_after_a_response_are_never_part_of_it_nor_of_the_next(trailer: bytes) -> None:
    async def trailing(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK + trailer)  # in one write: the client reads them together
        await peer.until_eof()

    async with (
        upstream(per_connection(trailing, answering())) as up,
        provider_at(up.base_url) as p,
    ):
        try:
            first: list[Event] | TokenwireError = await collect(p)
        except BadUpstream as error:  # a response followed by garbage is not trusted
            first = error
        assert first == ANSWERED or isinstance(first, BadUpstream)
        assert "INJECTED" not in repr(first)
        assert await collect(p) == ANSWERED
        assert await collect(p) == ANSWERED
    assert up.connections == 2  # the polluted connection was not used again


async def test_bytes_on_an_idle_connection_close_it() -> None:
    async def later(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nINJECTED")
        await peer.until_eof()

    async with upstream(per_connection(later, answering())) as up, provider_at(up.base_url) as p:
        assert await collect(p) == ANSWERED
        await within(up.peers[0].saw_eof.wait())  # the client dropped it
        assert await collect(p) == ANSWERED
    assert up.connections == 2


# --- proxies -------------------------------------------------------------------------------


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


async def test_an_http_upstream_goes_through_the_environments_proxy_with_credentials(
    clean_proxy_env: pytest.MonkeyPatch,
) -> None:
    async with upstream(answering()) as px:
        clean_proxy_env.setenv("HTTP_PROXY", f"http://user:p%40ss@127.0.0.1:{px.port}")
        async with provider_at("http://upstream.invalid/v1") as p:
            assert await collect(p) == ANSWERED
    (request,) = px.requests
    assert request.line == "POST http://upstream.invalid/v1/chat/completions HTTP/1.1"
    assert request.headers["host"] == "upstream.invalid"
    assert request.headers["proxy-authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss


async def test_a_proxy_refusing_the_tunnel_is_upstream_unavailable(
    clean_proxy_env: pytest.MonkeyPatch,
) -> None:
    async def refuse(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
        await peer.until_eof()

    async with upstream(refuse) as px:
        clean_proxy_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{px.port}")
        async with provider_at("https://upstream.invalid/v1") as p:
            error = await failure(p)
        await within(px.peers[0].saw_eof.wait())
    assert type(error) is UpstreamUnavailable
    assert px.requests[0].line == "CONNECT upstream.invalid:443 HTTP/1.1"


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "upstream.test").configure_cert(context)
    return context


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_an_https_upstream_is_reached_over_verified_tls_and_kept_alive(
    ca: trustme.CA,
) -> None:
    async with (
        upstream(answering(), tls=server_tls(ca)) as up,
        provider_at(up.base_url, tls=trusting(ca)) as p,
    ):
        assert [await collect(p), await collect(p)] == [ANSWERED, ANSWERED]
    assert up.connections == 1


async def test_ssl_cert_file_replaces_the_system_store(
    ca: trustme.CA, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    async with upstream(answering(), tls=server_tls(ca)) as up, provider_at(up.base_url) as p:
        assert await collect(p) == ANSWERED


async def test_a_certificate_not_trusted_is_upstream_unavailable(ca: trustme.CA) -> None:
    async with (
        upstream(answering(), tls=server_tls(ca)) as up,
        provider_at(up.base_url, tls=trusting(trustme.CA())) as p,  # another CA
    ):
        error = await failure(p)
    assert type(error) is UpstreamUnavailable
    assert up.requests == []


async def test_an_https_upstream_through_a_proxy_goes_through_its_tunnel(
    ca: trustme.CA, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    async with upstream(answering(), tls=server_tls(ca)) as up:

        async def tunnel(peer: Peer) -> None:
            """Join the client to the TLS upstream, whatever origin the CONNECT names."""
            await peer.request()
            reader, writer = await asyncio.open_connection("127.0.0.1", up.port)
            await peer.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            try:
                await asyncio.gather(pipe(peer.reader, writer), pipe(reader, peer.writer))
            finally:
                writer.close()

        async with upstream(tunnel) as px:
            clean_proxy_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{px.port}")
            async with provider_at("https://upstream.test/v1", tls=trusting(ca)) as p:
                assert await collect(p) == ANSWERED
    assert px.requests[0].line == "CONNECT upstream.test:443 HTTP/1.1"
    assert up.requests[0].line == "POST /v1/chat/completions HTTP/1.1"  # inside the tunnel
    assert up.requests[0].headers["host"] == "upstream.test"


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(64 * KiB):
            writer.write(data)
            await writer.drain()
    writer.close()


# --- closing -------------------------------------------------------------------------------


async def test_aclose_closes_idle_connections_and_refuses_later_calls() -> None:
    async with upstream(answering()) as up:
        p = OpenAICompatProvider(UpstreamConfig(name="up", base_url=up.base_url))
        assert await collect(p) == ANSWERED
        assert not up.peers[0].saw_eof.is_set()  # idle in the pool
        await p.aclose()
        await within(up.peers[0].saw_eof.wait())
        with pytest.raises(RuntimeError, match="up is closed"):
            await collect(p)
    assert up.connections == 1
