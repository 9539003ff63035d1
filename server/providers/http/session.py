"""The pooled `aiohttp.ClientSession` each HTTP provider holds, and how it is set up.

One session per provider: its connector is the connection pool (at most
`pool_size` connections, idle ones kept `KEEPALIVE_SECONDS`), its parser is
llhttp with bounded response heads, and it never rewrites what it reads:

- response heads: at most `MAX_HEADERS` header lines of `MAX_FIELD_SIZE` bytes
  each (and a status line of `MAX_LINE_SIZE`); beyond, the response fails
  early (a 502 from `exchange`), at no quadratic cost;
- no automatic decompression (requests ask for identity bodies, and a
  compressed answer is refused by `exchange`), no cookies kept between
  requests, no redirects followed (a POST carrying an API key goes where it
  was configured to, nowhere else);
- TLS verified against the system's trust store (`SSL_CERT_FILE` /
  `SSL_CERT_DIR` replace it), unless a context is handed in;
- the proxy `HTTP_PROXY` / `HTTPS_PROXY` name for the upstream (unless
  `NO_PROXY` exempts it), credentials in its URL included, read once here.
  aiohttp's `trust_env` would look both up again on every request, in a thread.

Limits of one exchange come from `UpstreamConfig` (`timeout`); a POST is never
sent twice by aiohttp itself (it retries only idempotent methods).
"""

from __future__ import annotations

import math
import ssl
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from server.providers.http.config import POOL_SIZE, UpstreamConfig

# Idle connections are dropped before common servers drop them (uvicorn, Node: 5 s), so a
# request rarely races a server closing the connection it was handed.
KEEPALIVE_SECONDS = 4.0
# Response heads: real upstreams send a few dozen short headers; these bound a hostile one
# (aiohttp's defaults, named here because they are a promise).
MAX_HEADERS = 128
MAX_FIELD_SIZE = 8190
MAX_LINE_SIZE = 8190


def new_session(
    *,
    pool_size: int = POOL_SIZE,
    proxy: str | None = None,
    tls: ssl.SSLContext | None = None,
    resolver: AbstractResolver | None = None,
    headers: Mapping[str, str] | None = None,
) -> aiohttp.ClientSession:
    """A session with its own pool; `resolver` lets tests point names at a local server,
    `headers` go on every request."""
    connector = aiohttp.TCPConnector(
        limit=pool_size,
        keepalive_timeout=KEEPALIVE_SECONDS,
        ssl=tls if tls is not None else True,
        resolver=resolver,
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        proxy=proxy,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        max_headers=MAX_HEADERS,
        max_field_size=MAX_FIELD_SIZE,
        max_line_size=MAX_LINE_SIZE,
    )


def session_for(config: UpstreamConfig, tls: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
    """The session a provider makes for itself (inside the running loop, as aiohttp wants)."""
    if tls is None and config.base_url.startswith("https:"):
        tls = ssl.create_default_context()  # the system store, or SSL_CERT_FILE / _DIR
    return new_session(pool_size=config.pool_size, proxy=env_proxy(config.base_url), tls=tls)


def timeout(config: UpstreamConfig) -> aiohttp.ClientTimeout:
    """One exchange's limits as aiohttp enforces them on every wait: `total` from the
    start, the wait for a pooled connection included; `sock_connect` per new connection;
    `sock_read` for any silence of the upstream once the request is written."""
    return aiohttp.ClientTimeout(
        total=config.total_timeout,
        sock_connect=config.connect_timeout,
        sock_read=config.first_byte_timeout,
        # aiohttp rounds limits of 5 s or more up to the next whole second: these end as set.
        ceil_threshold=math.inf,
    )


def env_proxy(url: str) -> str | None:
    """The proxy HTTP_PROXY / HTTPS_PROXY name for `url`, unless NO_PROXY exempts its host."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)
