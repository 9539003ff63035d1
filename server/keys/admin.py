"""The admin service: organizations and API keys, behind the admin credential.

Bound to REST under `/v1/admin` (see `proto/tokenwire/admin/v1/admin.proto`).
API keys are refused here (401): an organization can never list or change
keys, its own or another's, except through the admin.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from server.errors import Unauthenticated
from server.keys import validate
from server.keys.auth import AdminCredential
from server.keys.messages import key_message, organization_message, rate_from, spec_from
from server.keys.rpc import run
from server.keys.store import KeyStore
from server.pipeline.context import CallInfo
from tokenwire.admin.v1 import admin_pb2, admin_pb2_grpc

T = TypeVar("T")
DESCRIPTOR = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
CHALLENGE = 'Bearer realm="tokenwire-admin"'


def authorize(admin: AdminCredential, call: CallInfo) -> None:
    try:
        admin.check(call)
    except Unauthenticated:
        call.headers["www-authenticate"] = CHALLENGE
        raise


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self, store: KeyStore, admin: AdminCredential, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._admin = admin
        self._clock = clock

    async def _run(self, context: Any, work: Callable[[], Awaitable[T]]) -> T:
        async def guarded(call: CallInfo) -> T:
            authorize(self._admin, call)
            return await work()

        return await run(context, guarded)

    async def CreateOrganization(
        self, request: admin_pb2.CreateOrganizationRequest, context: Any
    ) -> admin_pb2.CreateOrganizationResponse:
        async def work() -> admin_pb2.CreateOrganizationResponse:
            rate = rate_from(request.rate_limit)
            org = await self._store.organizations.create(request.id, request.name, rate)
            return admin_pb2.CreateOrganizationResponse(organization=organization_message(org))

        return await self._run(context, work)

    async def ListOrganizations(
        self, request: admin_pb2.ListOrganizationsRequest, context: Any
    ) -> admin_pb2.ListOrganizationsResponse:
        async def work() -> admin_pb2.ListOrganizationsResponse:
            orgs = await self._store.organizations.list()
            data = [organization_message(o) for o in orgs]
            return admin_pb2.ListOrganizationsResponse(object="list", data=data)

        return await self._run(context, work)

    async def CreateKey(
        self, request: admin_pb2.CreateKeyRequest, context: Any
    ) -> admin_pb2.CreateKeyResponse:
        async def work() -> admin_pb2.CreateKeyResponse:
            spec = spec_from(request)
            issued = await self._store.create(spec, create_organization=request.create_organization)
            key = key_message(issued.key, self._clock())
            return admin_pb2.CreateKeyResponse(key=key, secret=issued.secret)

        return await self._run(context, work)

    async def ListKeys(
        self, request: admin_pb2.ListKeysRequest, context: Any
    ) -> admin_pb2.ListKeysResponse:
        async def work() -> admin_pb2.ListKeysResponse:
            org = request.organization_id if request.HasField("organization_id") else None
            if org is not None:
                validate.organization_id(org)
            keys, now = await self._store.list(org), self._clock()
            data = [key_message(k, now) for k in keys]
            return admin_pb2.ListKeysResponse(object="list", data=data)

        return await self._run(context, work)

    async def GetKey(
        self, request: admin_pb2.GetKeyRequest, context: Any
    ) -> admin_pb2.GetKeyResponse:
        async def work() -> admin_pb2.GetKeyResponse:
            key = await self._store.get(request.key_id)
            return admin_pb2.GetKeyResponse(key=key_message(key, self._clock()))

        return await self._run(context, work)

    async def RevokeKey(
        self, request: admin_pb2.RevokeKeyRequest, context: Any
    ) -> admin_pb2.RevokeKeyResponse:
        async def work() -> admin_pb2.RevokeKeyResponse:
            key = await self._store.revoke(request.key_id)
            return admin_pb2.RevokeKeyResponse(key=key_message(key, self._clock()))

        return await self._run(context, work)

    async def RotateKey(
        self, request: admin_pb2.RotateKeyRequest, context: Any
    ) -> admin_pb2.RotateKeyResponse:
        async def work() -> admin_pb2.RotateKeyResponse:
            issued = await self._store.rotate(request.key_id)
            key = key_message(issued.key, self._clock())
            return admin_pb2.RotateKeyResponse(key=key, secret=issued.secret)

        return await self._run(context, work)
