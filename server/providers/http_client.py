"""A lean pooled HTTP/1.1 client: what the upstream providers need, at a fifth of the cost.

aiohttp's `ClientSession` spent 170-250 µs of CPU per POST against
bench/upstream.py's fake upstream; this client, an asyncio `Protocol` around
httptools' parser (llhttp, as uvicorn parses with), spends 30-40 µs, and
tokenwire makes one such call per request. It does only what the providers
use: POST with a body, keep-alive pools per origin with a bound on the
exchanges in flight, Content-Length, chunked and read-until-close bodies, TLS,
an HTTP proxy (absolute-form requests for http, a CONNECT tunnel for https),
and three limits. One connection and its response are `http_connection`, whose
errors (drawn there) `http_upstream` translates once.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from server.providers.http_connection import (
    ConnectFailed,
    Connection,
    ConnectTimeout,
    Disconnected,
    IncompleteBody,
    Limits,
    Response,
)

MAX_PROXY_HEAD = 16 * 1024  # bytes of a proxy's answer to CONNECT, at most
# Exchanges in flight per origin, and idle connections kept: a small pool keeps closing and
# reopening connections under concurrent load.
POOL_SIZE = 512
# Idle connections are dropped before common servers drop them (uvicorn, Node: 5 s), so a
# request rarely races a server closing the connection it was handed.
KEEPALIVE_SECONDS = 4.0


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http(s) URL with a host is required")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port)

    def authority(self) -> str:
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request worked out once: where it goes and its head up to the body's length."""

    origin: Origin
    head: bytes  # "POST … HTTP/1.1\r\n" and every header line, then "content-length: "


Resolve = Callable[[str, int], tuple[str, int]]  # (host, port) to the address to connect to


class HttpClient:
    """Keep-alive connections, one pool per origin (the role of aiohttp's ClientSession).

    `proxy` is an http:// proxy URL for every origin (None: connect directly);
    `resolve` maps a host and port to the address actually dialled (tests point
    every name at one local server); `headers` go on every request; `tls` is the
    context for https origins (default: the system's trust store, which
    SSL_CERT_FILE / SSL_CERT_DIR can replace).
    """

    def __init__(
        self,
        *,
        proxy: str | None = None,
        headers: Mapping[str, str] | None = None,
        resolve: Resolve | None = None,
        tls: ssl.SSLContext | None = None,
        pool_size: int = POOL_SIZE,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._proxy = _Proxy.of(proxy) if proxy else None
        self._headers = dict(headers or {})
        self._resolve = resolve or _as_given
        self._pool_size = pool_size
        self._keepalive = keepalive
        self._pools: dict[Origin, _Pool] = {}
        self._tls = tls
        self.closed = False

    def prepare(self, url: str, headers: Mapping[str, str]) -> Prepared:
        """A POST to `url` with `headers` (names in any case; values may not hold CR or LF)."""
        origin, parts = Origin.of(url), urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        # One value per name, whatever its case: the request's over the client's.
        every = {k.lower(): (k, v) for k, v in (*self._headers.items(), *headers.items())}
        forwarded = self._proxy if not origin.tls else None  # https goes through a tunnel
        if forwarded is not None:
            target = f"http://{origin.authority()}{target}"  # absolute form, for the proxy
            if forwarded.auth:
                every["proxy-authorization"] = ("proxy-authorization", forwarded.auth)
        lines = [f"POST {target} HTTP/1.1", f"host: {origin.authority()}"]
        for name, value in every.values():
            if any(c in name + value for c in "\r\n\0"):
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}")
        try:
            head = ("\r\n".join(lines) + "\r\ncontent-length: ").encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("header names and values must be latin-1 text") from None
        return Prepared(origin, head)

    async def post(self, request: Prepared, body: bytes, limits: Limits) -> Response:
        """Send `request` with `body`; return once the response's head has arrived."""
        if self.closed:
            raise RuntimeError("the HTTP client is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.total
        data = request.head + b"%d\r\n\r\n" % len(body) + body
        pool = self._pool(request.origin)
        conn, reused = await pool.acquire(limits)
        try:
            return await conn.exchange(data, limits, deadline)
        except Disconnected as e:
            if not reused or isinstance(e, IncompleteBody):
                raise
        # A kept-alive connection the server closed while it was idle (a race with its own
        # keep-alive limit, before it read our request): one fresh try.
        conn, _ = await pool.acquire(limits, fresh=True)
        return await conn.exchange(data, limits, deadline)

    async def aclose(self) -> None:
        self.closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def _pool(self, origin: Origin) -> _Pool:
        pool = self._pools.get(origin)
        if pool is None:
            dial = self._dialer(origin)
            pool = self._pools[origin] = _Pool(dial, self._pool_size, self._keepalive)
        return pool

    def _dialer(self, origin: Origin) -> _Dial:
        tls = self._tls_context() if origin.tls else None
        if self._proxy is None:
            host, port = self._resolve(origin.host, origin.port)
            return _Dial(host, port, tls, origin.host)
        host, port = self._resolve(self._proxy.host, self._proxy.port)
        tunnel = self._proxy.connect_request(origin) if origin.tls else None
        return _Dial(host, port, tls, origin.host, tunnel)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


def _as_given(host: str, port: int) -> tuple[str, int]:
    return host, port


@dataclass(frozen=True, slots=True)
class _Proxy:
    host: str
    port: int
    auth: str | None  # a Proxy-Authorization value, from the URL's user info

    @classmethod
    def of(cls, url: str) -> _Proxy:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("only http:// proxies are supported")
        auth = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = "Basic " + base64.b64encode(pair.encode()).decode()
        return cls(parts.hostname, parts.port or 80, auth)

    def connect_request(self, origin: Origin) -> bytes:
        lines = [f"CONNECT {origin.host}:{origin.port} HTTP/1.1", f"host: {origin.authority()}"]
        if self.auth:
            lines.append(f"proxy-authorization: {self.auth}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True, slots=True)
class _Dial:
    """How to open a connection to one origin: the address, TLS, and a proxy tunnel."""

    host: str
    port: int
    tls: ssl.SSLContext | None
    server_hostname: str
    tunnel: bytes | None = None  # a CONNECT request to send first

    async def open(self, conn: Connection, limits: Limits) -> None:
        loop = asyncio.get_running_loop()
        tls_name = self.server_hostname if self.tls else None
        try:
            async with asyncio.timeout(limits.connect):
                if self.tunnel is None:
                    await loop.create_connection(
                        lambda: conn, self.host, self.port, ssl=self.tls, server_hostname=tls_name
                    )
                else:
                    sock = await self._tunnelled(loop)
                    await loop.create_connection(
                        lambda: conn, sock=sock, ssl=self.tls, server_hostname=tls_name
                    )
        except TimeoutError:
            raise ConnectTimeout("no connection within the connect limit") from None
        except (OSError, ssl.SSLError) as e:
            raise ConnectFailed(f"cannot connect: {type(e).__name__}") from None

    async def _tunnelled(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        """A socket to the proxy that it has joined to the origin (CONNECT)."""
        assert self.tunnel is not None
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            await loop.sock_sendall(sock, self.tunnel)
            head = b""
            while b"\r\n\r\n" not in head:
                if len(head) > MAX_PROXY_HEAD or not (more := await loop.sock_recv(sock, 4096)):
                    raise ConnectionError("the proxy broke off")
                head += more
            if head.split(b" ", 2)[1:2] != [b"200"]:
                raise ConnectionRefusedError("the proxy refused the tunnel")
            return sock
        except BaseException:
            sock.close()
            raise


class _Pool:
    """Connections to one origin: at most `size` in use, idle ones newest first (stale ones
    are dropped when met)."""

    def __init__(self, dial: _Dial, size: int, keepalive: float) -> None:
        self._dial = dial
        self._size = size
        self._keepalive = keepalive
        self._idle: list[Connection] = []
        # Exchanges in flight at once, so connections open at once: beyond, callers wait
        # (a burst must not exhaust file descriptors here or the upstream's patience).
        self._slots = asyncio.Semaphore(size)
        self._closed = False  # connections in use when the client closed are closed on return

    async def acquire(self, limits: Limits, fresh: bool = False) -> tuple[Connection, bool]:
        """A connection and whether it was used before; `returned` gives its slot back."""
        await self._slots.acquire()
        try:
            return await self._connection(limits, fresh)
        except BaseException:
            self._slots.release()
            raise

    async def _connection(self, limits: Limits, fresh: bool) -> tuple[Connection, bool]:
        now = asyncio.get_running_loop().time()
        while self._idle and not fresh:
            conn = self._idle.pop()
            if conn.usable() and now - conn.idle_since < self._keepalive:
                return conn, True
            conn.close()
        conn = Connection(self)
        await self._dial.open(conn, limits)
        return conn, False

    def returned(self, conn: Connection, keep: bool) -> None:
        """An exchange ended: its slot is free, its connection kept idle or closed."""
        self._slots.release()
        if keep and not self._closed and len(self._idle) < self._size and conn.usable():
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
