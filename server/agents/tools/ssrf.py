"""The SSRF guard: which addresses an agent's tools may connect to, checked after DNS.

A host name is resolved, and every address it resolves to must be public:
loopback, private, link-local, multicast, reserved and unspecified addresses
are refused (unless the service allows private addresses). `GuardedResolver`
plugs the check into aiohttp, so the connection goes to an address that was
checked, not to whatever a second lookup returns (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from server.errors import ToolFailed


def forbidden(address: str) -> bool:
    """Whether an IP address is one tools must not reach."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_address(host: str, address: str, allow_private: bool) -> None:
    if not allow_private and forbidden(address):
        raise ToolFailed(
            f"refused: {host} resolves to {address}, a private, loopback or link-local address"
        )


def ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing names that resolve to a forbidden address."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            found = await self._inner.resolve(host, port, family)
        except OSError as e:
            raise ToolFailed(f"cannot resolve {host}: {e}") from None
        for result in found:
            check_address(host, result["host"], self._allow_private)
        return found

    async def close(self) -> None:
        await self._inner.close()
