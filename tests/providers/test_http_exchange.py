"""`HttpClient` on its own, against raw HTTP/1.1 servers on 127.0.0.1 port 0.

Each server is `asyncio.start_server` writing bytes the test chose, so what
goes over the wire is exact: keep-alive and connection counts, request heads,
body framings, timeouts, proxies, cancellation and flow control are observed
from the server's side, not assumed from the client's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
import trustme

from server.providers import http_connection
from server.providers.http_client import HttpClient
from server.providers.http_connection import (
    HIGH_WATER,
    ConnectFailed,
    Disconnected,
    IncompleteBody,
    Limits,
    ProtocolError,
    ReadTimeout,
    Response,
    TotalTimeout,
)
from tests.providers.raw_server import http_chunk, serving

T = TypeVar("T")

WAIT = 5.0  # seconds: the bound on anything a test waits for
LIMITS = Limits(connect=2.0, read=2.0, total=5.0)
KiB = 1024
MiB = 1024 * KiB
# The most one data_received call carries: asyncio's and uvloop's transports read 256 KiB
# at a time, and the client can only pause reading between two calls.
READ_SIZE = 256 * KiB

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


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

    async def request(self) -> Request | None:
        """The next request on this connection, or None once the client closed it."""
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
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        request = Request(line, headers, head, body)
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


Handler = Callable[[Peer], Awaitable[None]]


@dataclass
class Upstream:
    port: int
    peers: list[Peer] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    @property
    def connections(self) -> int:
        return len(self.peers)

    def url(self, path: str = "/v1/x") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.asynccontextmanager
async def upstream(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Upstream]:
    """A server on 127.0.0.1:0 running `handler` on each connection it accepts (over TLS
    with `tls`)."""
    state = Upstream(port=0)

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


# --- the client ----------------------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    made = HttpClient()
    yield made
    await made.aclose()


async def post(
    client: HttpClient,
    url: str,
    body: bytes = b"{}",
    headers: Mapping[str, str] | None = None,
    limits: Limits = LIMITS,
) -> Response:
    return await within(client.post(client.prepare(url, headers or {}), body, limits))


async def read_all(response: Response) -> bytes:
    """The rest of the body, then the response closed (keeping a whole one's connection)."""
    chunks = []
    try:
        while chunk := await within(response.read()):
            chunks.append(chunk)
    finally:
        response.close()
    return b"".join(chunks)


async def fetch(client: HttpClient, url: str, body: bytes = b"{}") -> bytes:
    response = await post(client, url, body)
    assert response.status == 200
    return await read_all(response)


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it any more


# --- keep-alive and the request head -------------------------------------------------------


async def test_sequential_posts_reuse_one_connection_and_send_the_exact_head() -> None:
    client = HttpClient(headers={"User-Agent": "tokenwire-test"})
    try:
        async with upstream(answering()) as up:
            url = up.url("/v1/x?q=1")
            first = await post(client, url, b'{"a":1}', {"X-Api-Key": "k1"})
            assert (first.status, await read_all(first)) == (200, b"ok")
            second = await post(client, url, b"second", {"X-Api-Key": "k2"})
            assert (second.status, await read_all(second)) == (200, b"ok")
            assert up.connections == 1
    finally:
        await client.aclose()
    one, two = up.requests
    assert one.line == "POST /v1/x?q=1 HTTP/1.1"
    assert one.headers == {
        "host": f"127.0.0.1:{up.port}",
        "user-agent": "tokenwire-test",
        "x-api-key": "k1",
        "content-length": "7",
    }
    assert b"\r\nUser-Agent: tokenwire-test\r\n" in one.head  # names go out as given
    assert b"\r\nX-Api-Key: k1\r\n" in one.head
    assert one.body == b'{"a":1}'
    assert two.line == "POST /v1/x?q=1 HTTP/1.1"
    assert (two.headers["x-api-key"], two.headers["content-length"]) == ("k2", "6")
    assert two.body == b"second"


async def test_an_expired_idle_connection_is_not_reused() -> None:
    client = HttpClient(keepalive=0.0)
    try:
        async with upstream(answering()) as up:
            assert await fetch(client, up.url()) == b"ok"
            assert await fetch(client, up.url()) == b"ok"
            assert up.connections == 2
            await within(up.peers[0].saw_eof.wait())  # closed by the client, not left open
    finally:
        await client.aclose()


# --- bodies --------------------------------------------------------------------------------


async def test_a_content_length_body_is_read_whole(client: HttpClient) -> None:
    async def handle(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello")
            await peer.send(b" world")

    async with upstream(handle) as up:
        assert await fetch(client, up.url()) == b"hello world"
        assert await fetch(client, up.url()) == b"hello world"
        assert up.connections == 1


async def test_a_chunked_body_arrives_piece_by_piece_and_keeps_its_connection(
    client: HttpClient,
) -> None:
    pieces = [b"alpha ", b"beta ", b"gamma"]
    proceed = asyncio.Event()

    async def handle(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(CHUNKED_HEAD)
            for piece in pieces:
                await peer.send(http_chunk(piece))
                await proceed.wait()  # the client read it: only then the next
                proceed.clear()
            await peer.send(b"0\r\n\r\n")

    async with upstream(handle) as up:
        for _ in range(2):
            response = await post(client, up.url())
            for piece in pieces:
                got = b""
                while len(got) < len(piece):
                    got += await within(response.read())
                assert got == piece
                proceed.set()
            assert await read_all(response) == b""
        assert up.connections == 1


async def test_a_body_read_until_close_ends_at_eof_and_its_connection_is_not_reused(
    client: HttpClient,
) -> None:
    async def until_close(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nfirst")
        await peer.send(b"second")
        await peer.hang_up()

    async with upstream(until_close) as up:
        assert await fetch(client, up.url()) == b"firstsecond"
        assert await fetch(client, up.url()) == b"firstsecond"
        assert up.connections == 2


async def test_a_connection_close_response_is_not_reused_even_if_the_server_keeps_it(
    client: HttpClient,
) -> None:
    closing = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    async with upstream(answering(closing)) as up:
        assert await fetch(client, up.url()) == b"ok"
        await within(up.peers[0].saw_eof.wait())  # the client closed it
        assert await fetch(client, up.url()) == b"ok"
        assert up.connections == 2


async def test_a_response_abandoned_before_its_body_closes_its_connection(
    client: HttpClient,
) -> None:
    async def unfinished(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
        await peer.until_eof()

    async with upstream(per_connection(unfinished, answering())) as up:
        response = await post(client, up.url())
        assert await within(response.read()) == b"0123456789"
        response.close()
        await within(up.peers[0].saw_eof.wait())
        assert await fetch(client, up.url()) == b"ok"
        assert up.connections == 2


# --- connections that end --------------------------------------------------------------------


async def answer_then_close(peer: Peer) -> None:
    await peer.request()
    await peer.send(OK)
    await peer.hang_up()


async def answer_then_drop(peer: Peer) -> None:
    await peer.request()
    await peer.send(OK)
    await peer.request()  # the idle connection is dropped just as the request comes


@pytest.mark.parametrize(
    ("first", "bodies"),
    [(answer_then_close, [b"one", b"two"]), (answer_then_drop, [b"one", b"two", b"two"])],
    ids=["closed while idle", "dropped on the next request"],
)
async def test_a_kept_alive_connection_the_server_ended_is_retried_once_on_a_fresh_one(
    client: HttpClient, first: Handler, bodies: list[bytes]
) -> None:
    async with upstream(per_connection(first, answering())) as up:
        assert await fetch(client, up.url(), b"one") == b"ok"
        assert await fetch(client, up.url(), b"two") == b"ok"
        assert up.connections == 2
        assert [r.body for r in up.requests] == bodies


async def test_a_connection_dying_mid_body_raises_incomplete_body(client: HttpClient) -> None:
    async def cut_short(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
        await peer.hang_up()

    async with upstream(cut_short) as up:
        response = await post(client, up.url())
        with pytest.raises(IncompleteBody):
            await read_all(response)
        assert up.connections == 1


async def test_a_chunked_body_cut_short_raises_incomplete_body(client: HttpClient) -> None:
    async def cut_short(peer: Peer) -> None:
        await peer.request()
        await peer.send(CHUNKED_HEAD + http_chunk(b"partial"))
        await peer.hang_up()

    async with upstream(cut_short) as up:
        response = await post(client, up.url())
        with pytest.raises(IncompleteBody):
            await read_all(response)


async def test_a_reset_during_a_body_read_until_close_raises_incomplete_body(
    client: HttpClient,
) -> None:
    """Only a clean end of the connection ends such a body; a reset truncates it."""
    read_some = asyncio.Event()

    async def reset(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\npartial")
        await read_some.wait()
        sock = peer.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.writer.transport.abort()  # linger 0: an RST, not a FIN

    async with upstream(reset) as up:
        response = await post(client, up.url())
        assert await within(response.read()) == b"partial"
        read_some.set()
        with pytest.raises(IncompleteBody):
            await read_all(response)


async def test_a_fresh_connection_dying_before_a_response_raises_disconnected(
    client: HttpClient,
) -> None:
    async def drop(peer: Peer) -> None:
        await peer.request()

    async with upstream(drop) as up:
        with pytest.raises(Disconnected) as info:
            await post(client, up.url())
        assert type(info.value) is Disconnected
        assert up.connections == 1  # a fresh connection is never retried


async def test_the_transparent_retry_happens_only_once(client: HttpClient) -> None:
    async def drop(peer: Peer) -> None:
        await peer.request()

    async with upstream(per_connection(answer_then_drop, drop)) as up:
        assert await fetch(client, up.url(), b"one") == b"ok"
        with pytest.raises(Disconnected) as info:
            await post(client, up.url(), b"two")
        assert type(info.value) is Disconnected
        assert up.connections == 2
        assert [r.body for r in up.requests] == [b"one", b"two", b"two"]


# --- limits --------------------------------------------------------------------------------


async def silent(peer: Peer) -> None:
    await peer.request()
    await peer.until_eof()


async def test_a_server_that_never_answers_hits_the_read_limit(client: HttpClient) -> None:
    async with upstream(silent) as up:
        with pytest.raises(ReadTimeout):
            await post(client, up.url(), limits=Limits(connect=2.0, read=0.2, total=5.0))
        await within(up.peers[0].saw_eof.wait())  # and the connection is closed


async def test_a_body_that_stalls_hits_the_read_limit(client: HttpClient) -> None:
    async def stall(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n")
        await peer.until_eof()

    async with upstream(stall) as up:
        response = await post(client, up.url(), limits=Limits(connect=2.0, read=0.2, total=5.0))
        assert response.status == 200
        with pytest.raises(ReadTimeout):
            await read_all(response)
        await within(up.peers[0].saw_eof.wait())


async def test_a_trickling_body_hits_the_total_limit(client: HttpClient) -> None:
    async def trickle(peer: Peer) -> None:
        await peer.request()
        await peer.send(CHUNKED_HEAD)
        for _ in range(200):  # 10 s at most: the client's total limit must end it well before
            await asyncio.sleep(0.05)
            await peer.send(http_chunk(b"."))
        await peer.send(b"0\r\n\r\n")

    async with upstream(trickle) as up:
        response = await post(client, up.url(), limits=Limits(connect=2.0, read=2.0, total=0.3))
        got = b""
        with pytest.raises(TotalTimeout):
            try:
                while chunk := await within(response.read()):
                    got += chunk
            finally:
                response.close()
        assert got  # the upstream was never silent for the read limit
        await within(up.peers[0].saw_eof.wait())


async def test_a_refused_connection_raises_connect_failed(client: HttpClient) -> None:
    with pytest.raises(ConnectFailed):
        await post(client, f"http://127.0.0.1:{refused_port()}/v1/x")


# --- malformed responses and headers -------------------------------------------------------


async def test_bytes_that_are_not_http_raise_protocol_error(client: HttpClient) -> None:
    async def garble(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"NOT HTTP\r\n\r\n")
        await peer.until_eof()

    async with upstream(garble) as up:
        with pytest.raises(ProtocolError):
            await post(client, up.url())
        await within(up.peers[0].saw_eof.wait())


async def test_a_malformed_chunk_raises_protocol_error(client: HttpClient) -> None:
    async def garble(peer: Peer) -> None:
        await peer.request()
        await peer.send(CHUNKED_HEAD + http_chunk(b"fine") + b"zz\r\nbad\r\n")
        await peer.until_eof()

    async with upstream(garble) as up:
        with pytest.raises(ProtocolError):
            await read_all(await post(client, up.url()))


async def test_response_headers_are_lower_cased_and_repeats_joined(client: HttpClient) -> None:
    limited = (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nX-Multi: a\r\n"
        b"x-multi: b\r\nContent-Length: 4\r\n\r\nslow"
    )
    async with upstream(answering(limited)) as up:
        response = await post(client, up.url())
        assert response.status == 429
        assert response.headers == {"retry-after": "3", "x-multi": "a, b", "content-length": "4"}
        assert response.headers["retry-after"] == "3"
        assert await read_all(response) == b"slow"


async def test_an_interim_1xx_response_is_skipped_for_the_final_one(client: HttpClient) -> None:
    """RFC 9110 15.2: a client must parse 1xx responses even when it expects none."""

    async def interim(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 100 Continue\r\nx-interim: yes\r\n\r\n")
            await asyncio.sleep(0.05)  # server-driven: the final response in a later packet
            await peer.send(OK)

    async with upstream(interim) as up:
        response = await post(client, up.url())
        assert response.status == 200
        assert "x-interim" not in response.headers
        assert await read_all(response) == b"ok"


# --- prepare, proxies, resolve ---------------------------------------------------------------


def test_prepare_sends_one_value_per_header_name_whatever_its_case() -> None:
    client = HttpClient(headers={"User-Agent": "client", "X-A": "1"})
    head = client.prepare("http://upstream.test/v1/x", {"user-agent": "request"}).head
    assert head.count(b"user-agent") + head.count(b"User-Agent") == 1
    assert b"user-agent: request\r\n" in head
    assert b"X-A: 1\r\n" in head


def test_prepare_refuses_line_breaks_in_headers() -> None:
    client = HttpClient()
    with pytest.raises(ValueError):
        client.prepare("http://upstream.test/v1/x", {"x-key": "a\r\nx-injected: 1"})
    with pytest.raises(ValueError):
        client.prepare("http://upstream.test/v1/x", {"x-key\r\nx-injected": "1"})
    with pytest.raises(ValueError):
        HttpClient(headers={"x-key": "a\nb"}).prepare("http://upstream.test/v1/x", {})


async def test_an_http_origin_through_a_proxy_uses_the_absolute_form() -> None:
    async with upstream(answering(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nproxied")) as px:
        client = HttpClient(proxy=f"http://127.0.0.1:{px.port}")
        try:
            prepared = client.prepare("http://upstream.invalid/v1/x", {})
            assert prepared.head.startswith(b"POST http://upstream.invalid/v1/x HTTP/1.1\r\n")
            assert await fetch(client, "http://upstream.invalid/v1/x") == b"proxied"
        finally:
            await client.aclose()
    (request,) = px.requests
    assert request.line == "POST http://upstream.invalid/v1/x HTTP/1.1"
    assert request.headers["host"] == "upstream.invalid"
    assert "proxy-authorization" not in request.headers


async def test_a_proxy_url_with_credentials_sends_proxy_authorization() -> None:
    async with upstream(answering()) as px:
        client = HttpClient(proxy=f"http://user:p%40ss@127.0.0.1:{px.port}")
        try:
            assert await fetch(client, "http://upstream.invalid/v1/x") == b"ok"
        finally:
            await client.aclose()
    expected = "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert px.requests[0].headers["proxy-authorization"] == expected


async def test_an_https_origin_through_a_proxy_asks_for_a_tunnel_first() -> None:
    async def refuse(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
        await peer.until_eof()  # left open: the client must hang up itself

    async with upstream(refuse) as px:
        client = HttpClient(proxy=f"http://user:pw@127.0.0.1:{px.port}")
        try:
            prepared = client.prepare("https://upstream.invalid/v1/x", {})
            assert prepared.head.startswith(b"POST /v1/x HTTP/1.1\r\n")  # inside the tunnel
            assert b"proxy-authorization" not in prepared.head  # never sent to the origin
            with pytest.raises(ConnectFailed):
                await within(client.post(prepared, b"{}", LIMITS))
            await within(px.peers[0].saw_eof.wait())
        finally:
            await client.aclose()
    (connect,) = px.requests
    assert connect.line == "CONNECT upstream.invalid:443 HTTP/1.1"
    assert connect.headers["proxy-authorization"].startswith("Basic ")


async def test_resolve_points_a_name_at_another_address() -> None:
    asked: list[tuple[str, int]] = []
    async with upstream(answering()) as up:

        def resolve(host: str, port: int) -> tuple[str, int]:
            asked.append((host, port))
            return "127.0.0.1", up.port

        client = HttpClient(resolve=resolve)
        try:
            assert await fetch(client, "http://upstream.test/v1/x") == b"ok"
        finally:
            await client.aclose()
    assert asked == [("upstream.test", 80)]
    assert up.requests[0].headers["host"] == "upstream.test"


async def test_exchanges_beyond_the_pool_size_wait_for_a_slot() -> None:
    arrived, go = asyncio.Event(), asyncio.Event()

    async def held(peer: Peer) -> None:
        while await peer.request() is not None:
            if len(peer.requests) == 2:
                arrived.set()
            await go.wait()
            await peer.send(OK)

    async with upstream(held) as up:
        client = HttpClient(pool_size=2)
        try:
            calls = [asyncio.create_task(fetch(client, up.url())) for _ in range(3)]
            await within(arrived.wait())
            assert up.connections == 2  # the third call waits for a slot, on no socket
            go.set()
            assert await within(asyncio.gather(*calls)) == [b"ok"] * 3
        finally:
            await client.aclose()
    assert up.connections == 2  # the third ran on a connection the first two gave back
    assert len(up.requests) == 3


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("upstream.test").configure_cert(context)
    return context


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def to(port: int) -> Callable[[str, int], tuple[str, int]]:
    return lambda _host, _port: ("127.0.0.1", port)


async def test_an_https_origin_is_reached_over_verified_tls_and_kept_alive(ca: trustme.CA) -> None:
    async with upstream(answering(), tls=server_tls(ca)) as up:
        client = HttpClient(tls=trusting(ca), resolve=to(up.port))
        try:
            url = f"https://upstream.test:{up.port}/v1/x"
            assert [await fetch(client, url), await fetch(client, url)] == [b"ok", b"ok"]
        finally:
            await client.aclose()
    assert up.connections == 1
    assert up.requests[0].headers["host"] == f"upstream.test:{up.port}"


async def test_a_certificate_the_client_does_not_trust_fails_to_connect(ca: trustme.CA) -> None:
    async with upstream(answering(), tls=server_tls(ca)) as up:
        client = HttpClient(tls=trusting(trustme.CA()), resolve=to(up.port))  # another CA
        try:
            with pytest.raises(ConnectFailed):
                await post(client, f"https://upstream.test:{up.port}/v1/x")
        finally:
            await client.aclose()
    assert up.requests == []


async def test_an_https_origin_through_a_proxy_goes_through_its_tunnel(ca: trustme.CA) -> None:
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
            client = HttpClient(proxy=f"http://127.0.0.1:{px.port}", tls=trusting(ca))
            try:
                assert await fetch(client, "https://upstream.test/v1/x") == b"ok"
            finally:
                await client.aclose()
    assert px.requests[0].line == "CONNECT upstream.test:443 HTTP/1.1"
    assert up.requests[0].line == "POST /v1/x HTTP/1.1"  # origin form, inside the tunnel
    assert up.requests[0].headers["host"] == "upstream.test"


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(64 * KiB):
            writer.write(data)
            await writer.drain()
    writer.close()


# --- cancellation and closing ----------------------------------------------------------------


async def test_cancelling_a_waiting_post_closes_its_connection(client: HttpClient) -> None:
    got_request = asyncio.Event()

    async def hold(peer: Peer) -> None:
        await peer.request()
        got_request.set()
        await peer.until_eof()

    async with upstream(hold) as up:
        task = asyncio.create_task(client.post(client.prepare(up.url(), {}), b"{}", LIMITS))
        await within(got_request.wait())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await within(up.peers[0].saw_eof.wait())


async def test_aclose_closes_idle_connections_and_refuses_later_posts() -> None:
    client = HttpClient()
    async with upstream(answering()) as up:
        assert await fetch(client, up.url()) == b"ok"
        assert not up.peers[0].saw_eof.is_set()  # idle in the pool
        await client.aclose()
        await within(up.peers[0].saw_eof.wait())
        with pytest.raises(RuntimeError):
            await client.post(client.prepare(up.url(), {}), b"{}", LIMITS)
        assert up.connections == 1


async def test_a_response_finished_after_aclose_closes_its_connection() -> None:
    """A connection busy at `aclose` must not go back to the closed client's pool."""
    proceed = asyncio.Event()

    async def in_two_parts(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab")
        await proceed.wait()
        await peer.send(b"cd")
        await peer.until_eof()

    client = HttpClient()
    async with upstream(in_two_parts) as up:
        response = await post(client, up.url())
        assert await within(response.read()) == b"ab"
        await client.aclose()
        proceed.set()
        with contextlib.suppress(http_connection.HttpError):
            await read_all(response)
        await within(up.peers[0].saw_eof.wait())


# --- flow control --------------------------------------------------------------------------


async def test_a_slow_reader_bounds_what_a_response_buffers(
    client: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = random.Random(13).randbytes(4 * MiB)
    bound = HIGH_WATER + READ_SIZE
    peak = 0
    paused = asyncio.Event()
    feed, pause = Response.feed, http_connection.Connection.pause

    def watched_feed(self: Response, data: bytes) -> None:
        nonlocal peak
        feed(self, data)
        peak = max(peak, self._buffered)

    def watched_pause(self: http_connection.Connection) -> None:
        pause(self)
        paused.set()

    monkeypatch.setattr(Response, "feed", watched_feed)
    monkeypatch.setattr(http_connection.Connection, "pause", watched_pause)

    async def flood(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), 64 * KiB):
            await peer.send(body[start : start + 64 * KiB])  # as fast as the client allows
        await peer.until_eof()

    async with upstream(flood) as up:
        response = await post(client, up.url())
        await within(paused.wait())  # the client stopped reading the socket
        for _ in range(50):
            await asyncio.sleep(0)  # not synchronisation: room for data that should not come
        assert HIGH_WATER < response._buffered <= bound
        assert peak <= bound
        received = bytearray()
        while chunk := await within(response.read()):
            received += chunk
            await asyncio.sleep(0)  # a slow reader: the server may refill between reads
        response.close()
        assert peak <= bound
        assert len(received) == len(body)
        assert received == body
        assert up.connections == 1
