"""`http_fetch`: GET a URL on one of the agent's allowed hosts, body and time capped.

The host must be listed in the tool's `allowed_hosts` (exact match) and must
not resolve to a private, loopback or link-local address (`ssrf`), unless the
service allows that. Redirects are not followed (a redirect could leave the
allowed hosts); the answer is its status line and the body's first bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from server.agents.tools import ssrf
from server.agents.tools.base import function, text_argument
from server.errors import ToolFailed

DEFAULT_MAX_BYTES = 65536

DEFINITION = function(
    "http_fetch",
    "Fetch a web page or API response with HTTP GET.",
    {"url": {"type": "string", "description": "The http:// or https:// URL."}},
    ["url"],
)


@dataclass(frozen=True, slots=True)
class FetchRules:
    allowed_hosts: frozenset[str]
    max_bytes: int = DEFAULT_MAX_BYTES
    allow_private: bool = False
    timeout: float = 10.0


class HttpFetch:
    name = "http_fetch"
    definition = DEFINITION

    def __init__(self, session: aiohttp.ClientSession, rules: FetchRules) -> None:
        self._session = session
        self._rules = rules

    async def run(self, arguments: dict[str, Any]) -> str:
        url = text_argument(arguments, "url")
        host = self._checked_host(url)
        literal = ssrf.ip_literal(host)
        if literal is not None:  # aiohttp does not ask the resolver for an address literal
            ssrf.check_address(host, literal, self._rules.allow_private)
        try:
            return await self._get(url)
        except aiohttp.ClientError as e:
            raise ToolFailed(f"fetching {url} failed: {e}") from None

    def _checked_host(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ToolFailed("the URL must be http:// or https:// with a host")
        if parts.hostname not in self._rules.allowed_hosts:
            raise ToolFailed(f"refused: {parts.hostname} is not an allowed host")
        return parts.hostname

    async def _get(self, url: str) -> str:
        timeout = aiohttp.ClientTimeout(total=self._rules.timeout)
        async with self._session.get(url, allow_redirects=False, timeout=timeout) as response:
            body = await response.content.read(self._rules.max_bytes + 1)
        text = body[: self._rules.max_bytes].decode("utf-8", "replace")
        cut = " (truncated)" if len(body) > self._rules.max_bytes else ""
        return f"HTTP {response.status}{cut}\n{text}"


def session(allow_private: bool) -> aiohttp.ClientSession:
    """The one session `http_fetch` calls go through, resolving through the SSRF guard."""
    connector = aiohttp.TCPConnector(resolver=ssrf.GuardedResolver(allow_private), limit=32)
    return aiohttp.ClientSession(connector=connector, trust_env=False)
