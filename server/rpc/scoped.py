"""Servicer calls authenticated and scoped to the caller's organization.

Templates and memories belong to an organization; every call of their
services runs for exactly one, named by the principal the injected
`Authenticator` returns (the `organization_id` header in open mode, the key's
organization otherwise). A call without one is refused (400,
`organization_required`). Also here: the
`limit` check of list calls, which the memory service shares.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from server.errors import InvalidRequest, TokenwireError
from server.pipeline.context import Authenticator, CallInfo, Principal
from server.rpc.status import abort

log = logging.getLogger("tokenwire.scoped")

T = TypeVar("T")


def organization_of(principal: Principal) -> str:
    """The principal's organization, or a 400 saying how to name one."""
    if not principal.organization_id:
        raise InvalidRequest(
            "This call needs an organization: send the `organization_id` header "
            "or use an API key that belongs to an organization.",
            code="organization_required",
        )
    return principal.organization_id


class OrgScoped:
    """Runs a servicer's work for the caller's organization, errors turned into statuses."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def run(self, context: Any, work: Callable[[str], Awaitable[T]]) -> T:
        try:
            principal = await self._auth.authenticate(CallInfo.of(context))
            return await work(organization_of(principal))
        except TokenwireError as e:
            await abort(context, e)
        except Exception:
            log.exception("unexpected error in an organization-scoped call")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            raise


def page_limit(request: Message, default: int, most: int = 100) -> int:
    """The request's `limit`, `default` when unset; 400 outside [1, most]."""
    if not request.HasField("limit"):
        return default
    value: int = getattr(request, "limit")  # noqa: B009 - any request type with a `limit`
    if not 1 <= value <= most:
        raise InvalidRequest(f"'limit' must be in [1, {most}]; got {value}.", param="limit")
    return value
