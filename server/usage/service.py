"""The usage service: aggregates and CSV export, each caller confined to what it may see.

admin credential      every organization; an unknown `organization_id` is 404
API key               its own organization only; naming another one is 403
                      (whether or not it exists: nothing leaks across tenants)
anything else         401 (with `WWW-Authenticate`)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from google.api import httpbody_pb2
from grpc.aio import ServicerContext

from server.errors import InvalidRequest, PermissionDenied
from server.pipeline.context import CallInfo
from server.rpc.access import Access
from server.rpc.boundary import CALL
from server.usage.csv_export import to_csv
from server.usage.messages import bucket_message, dimensions_from, filter_from
from server.usage.query import UsageFilter
from server.usage.store import UsageStore
from tokenwire.usage.v1 import usage_pb2 as pb
from tokenwire.usage.v1 import usage_pb2_grpc

DESCRIPTOR = pb.DESCRIPTOR.services_by_name["UsageService"]
DEFAULT_EXPORT = 10_000
MAX_EXPORT = 100_000
CSV_TYPE = "text/csv; charset=utf-8"


class Organizations(Protocol):
    async def get(self, org_id: str) -> Any:
        """The organization; raises `NotFound` for an unknown one."""
        ...


class UsageServicer(usage_pb2_grpc.UsageServiceServicer):
    def __init__(
        self, store: UsageStore, access: Access, organizations: Organizations | None = None
    ) -> None:
        self._store = store
        self._access = access
        self._organizations = organizations

    async def GetUsage(
        self,
        request: pb.GetUsageRequest,
        context: ServicerContext[pb.GetUsageRequest, pb.GetUsageResponse],
    ) -> pb.GetUsageResponse:
        usage_filter = await self._scoped(CALL.get(), filter_from(request))
        buckets = await self._store.aggregate(usage_filter, dimensions_from(request.group_by))
        total = await self._store.total(usage_filter)
        return pb.GetUsageResponse(
            object="list", data=[bucket_message(b) for b in buckets], total=bucket_message(total)
        )

    async def ExportUsage(
        self,
        request: pb.ExportUsageRequest,
        context: ServicerContext[pb.ExportUsageRequest, pb.ExportUsageResponse],
    ) -> pb.ExportUsageResponse:
        call = CALL.get()
        usage_filter = await self._scoped(call, filter_from(request))
        limit = _limit(request)
        records = await self._store.records(usage_filter, limit + 1)
        count, truncated = min(len(records), limit), len(records) > limit
        # REST clients get the CSV as the body, so the counts travel as headers too
        call.headers["x-tokenwire-records"] = str(count)
        call.headers["x-tokenwire-truncated"] = "true" if truncated else "false"
        csv = to_csv(records[:limit]).encode()
        return pb.ExportUsageResponse(
            body=httpbody_pb2.HttpBody(content_type=CSV_TYPE, data=csv),
            records=count,
            truncated=truncated,
        )

    async def _scoped(self, call: CallInfo, usage_filter: UsageFilter) -> UsageFilter:
        """The filter narrowed to what the caller may see."""
        asked = usage_filter.organization_id
        if self._access.is_admin(call):
            if asked is not None and self._organizations is not None:
                await self._organizations.get(asked)
            return usage_filter
        own = (await self._access.principal(call)).organization_id
        if own is None:
            raise PermissionDenied("Name your organization in the 'organization_id' header.")
        if asked is not None and asked != own:
            raise PermissionDenied(
                "An API key may read only its own organization's usage.",
                param="filter.organization_id",
            )
        return replace(usage_filter, organization_id=own)


def _limit(request: pb.ExportUsageRequest) -> int:
    if not request.HasField("limit"):
        return DEFAULT_EXPORT
    if not 1 <= request.limit <= MAX_EXPORT:
        raise InvalidRequest(f"'limit' must be in [1, {MAX_EXPORT}].", param="limit")
    return request.limit
