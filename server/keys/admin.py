"""The admin service: organizations and API keys, behind the admin credential.

Bound to REST under `/v1/admin` (see `proto/tokenwire/admin/v1/admin.proto`).
API keys are refused here (401): an organization can never list or change
keys, its own or another's, except through the admin.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from grpc.aio import ServicerContext

from server.keys import validate
from server.keys.messages import key_message, organization_message, rate_from, spec_from
from server.keys.store import KeyStore
from server.rpc.access import Access
from server.rpc.boundary import CALL
from tokenwire.admin.v1 import admin_pb2 as pb
from tokenwire.admin.v1 import admin_pb2_grpc

DESCRIPTOR = pb.DESCRIPTOR.services_by_name["AdminService"]


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self, store: KeyStore, access: Access, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._access = access
        self._clock = clock

    async def CreateOrganization(
        self,
        request: pb.CreateOrganizationRequest,
        context: ServicerContext[pb.CreateOrganizationRequest, pb.CreateOrganizationResponse],
    ) -> pb.CreateOrganizationResponse:
        self._access.admin(CALL.get())
        rate = rate_from(request.rate_limit)
        org = await self._store.organizations.create(request.id, request.name, rate)
        return pb.CreateOrganizationResponse(organization=organization_message(org))

    async def ListOrganizations(
        self,
        request: pb.ListOrganizationsRequest,
        context: ServicerContext[pb.ListOrganizationsRequest, pb.ListOrganizationsResponse],
    ) -> pb.ListOrganizationsResponse:
        self._access.admin(CALL.get())
        data = [organization_message(o) for o in await self._store.organizations.list()]
        return pb.ListOrganizationsResponse(object="list", data=data)

    async def CreateKey(
        self,
        request: pb.CreateKeyRequest,
        context: ServicerContext[pb.CreateKeyRequest, pb.CreateKeyResponse],
    ) -> pb.CreateKeyResponse:
        self._access.admin(CALL.get())
        spec = spec_from(request)
        issued = await self._store.create(spec, create_organization=request.create_organization)
        return pb.CreateKeyResponse(
            key=key_message(issued.key, self._clock()), secret=issued.secret
        )

    async def ListKeys(
        self,
        request: pb.ListKeysRequest,
        context: ServicerContext[pb.ListKeysRequest, pb.ListKeysResponse],
    ) -> pb.ListKeysResponse:
        self._access.admin(CALL.get())
        org = request.organization_id if request.HasField("organization_id") else None
        if org is not None:
            validate.organization_id(org)
        keys, now = await self._store.list(org), self._clock()
        return pb.ListKeysResponse(object="list", data=[key_message(k, now) for k in keys])

    async def GetKey(
        self,
        request: pb.GetKeyRequest,
        context: ServicerContext[pb.GetKeyRequest, pb.GetKeyResponse],
    ) -> pb.GetKeyResponse:
        self._access.admin(CALL.get())
        key = await self._store.get(request.key_id)
        return pb.GetKeyResponse(key=key_message(key, self._clock()))

    async def RevokeKey(
        self,
        request: pb.RevokeKeyRequest,
        context: ServicerContext[pb.RevokeKeyRequest, pb.RevokeKeyResponse],
    ) -> pb.RevokeKeyResponse:
        self._access.admin(CALL.get())
        key = await self._store.revoke(request.key_id)
        return pb.RevokeKeyResponse(key=key_message(key, self._clock()))

    async def RotateKey(
        self,
        request: pb.RotateKeyRequest,
        context: ServicerContext[pb.RotateKeyRequest, pb.RotateKeyResponse],
    ) -> pb.RotateKeyResponse:
        self._access.admin(CALL.get())
        issued = await self._store.rotate(request.key_id)
        return pb.RotateKeyResponse(
            key=key_message(issued.key, self._clock()), secret=issued.secret
        )
