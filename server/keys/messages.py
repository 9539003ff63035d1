"""Key and organization records to and from `tokenwire.admin.v1` messages."""

from __future__ import annotations

from typing import cast

from gateway.transcode import enum_names
from server.keys.records import KeyRecord, KeySpec, Organization
from server.limits.base import Rate
from tokenwire.admin.v1 import admin_pb2

_STATES = cast(
    "dict[str, admin_pb2.KeyState.ValueType]", enum_names(admin_pb2.KeyState.DESCRIPTOR).by_name
)
DEFAULT_WINDOW = 60


def rate_message(rate: Rate) -> admin_pb2.RateLimit:
    out = admin_pb2.RateLimit(window_seconds=rate.window)
    if rate.requests is not None:
        out.requests = rate.requests
    if rate.tokens is not None:
        out.tokens = rate.tokens
    return out


def rate_from(message: admin_pb2.RateLimit) -> Rate:
    return Rate(
        requests=message.requests if message.HasField("requests") else None,
        tokens=message.tokens if message.HasField("tokens") else None,
        window=message.window_seconds or DEFAULT_WINDOW,
    )


def organization_message(org: Organization) -> admin_pb2.Organization:
    return admin_pb2.Organization(
        id=org.id,
        object="organization",
        name=org.name,
        create_time=int(org.created_at),
        rate_limit=rate_message(org.rate),
    )


def key_message(key: KeyRecord, now: float) -> admin_pb2.ApiKey:
    spec = key.spec
    out = admin_pb2.ApiKey(
        id=key.id,
        object="api_key",
        organization_id=spec.organization_id,
        name=spec.name,
        prefix=key.prefix,
        state=_STATES[key.state(now)],
        allowed_models=spec.allowed_models,
        allowed_agents=spec.allowed_agents,
        rate_limit=rate_message(spec.rate),
        spent_usd=key.spent_usd,
        create_time=int(key.created_at),
    )
    if spec.default_model is not None:
        out.default_model = spec.default_model
    if spec.budget_usd is not None:
        out.budget_usd = spec.budget_usd
    for field, value in (
        ("expire_time", spec.expires_at),
        ("revoke_time", key.revoked_at),
        ("rotate_time", key.rotated_at),
    ):
        if value is not None:
            setattr(out, field, int(value))
    return out


def spec_from(request: admin_pb2.CreateKeyRequest) -> KeySpec:
    return KeySpec(
        organization_id=request.organization_id,
        name=request.name,
        default_model=request.default_model if request.HasField("default_model") else None,
        allowed_models=tuple(request.allowed_models),
        allowed_agents=tuple(request.allowed_agents),
        rate=rate_from(request.rate_limit),
        budget_usd=request.budget_usd if request.HasField("budget_usd") else None,
        expires_at=float(request.expire_time) if request.HasField("expire_time") else None,
    )
