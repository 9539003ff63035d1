"""Admin input checked once, each problem a clear `InvalidRequest` naming its field."""

from __future__ import annotations

import math
import re

from server.errors import InvalidRequest
from server.keys.records import KeySpec
from server.limits.base import Rate

ORGANIZATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KEY_ID = re.compile(r"key_[0-9a-f]{24}")
MAX_NAME = 100
MAX_MODEL = 256
MAX_MODELS = 100
MAX_WINDOW = 31 * 24 * 3600
MAX_REQUESTS = 2**31 - 1
MAX_TOKENS = 2**63 - 1
# The end of year 9999 UTC: later expiry times, stored as floats, would not round-trip to int64.
MAX_EXPIRE_TIME = 253_402_300_799


def organization_id(value: str, param: str = "organization_id") -> str:
    if not ORGANIZATION_ID.fullmatch(value):
        raise InvalidRequest(
            "An organization id is 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            param=param,
        )
    return value


def name(value: str, param: str = "name") -> str:
    if len(value) > MAX_NAME or not value.isprintable():
        raise InvalidRequest(
            f"'{param}' must be printable and at most {MAX_NAME} characters.", param=param
        )
    return value


def model(value: str, param: str) -> str:
    if not value or len(value) > MAX_MODEL or not value.isprintable():
        raise InvalidRequest(
            f"'{param}' must be a model id of 1 to {MAX_MODEL} characters.", param=param
        )
    return value


def rate(value: Rate, param: str = "rate_limit") -> Rate:
    for field, limit, most in (
        ("requests", value.requests, MAX_REQUESTS),
        ("tokens", value.tokens, MAX_TOKENS),
    ):
        if limit is not None and not 1 <= limit <= most:
            raise InvalidRequest(
                f"'{param}.{field}' must be in [1, {most}] (leave it unset for no limit).",
                param=f"{param}.{field}",
            )
    if not 1 <= value.window <= MAX_WINDOW:
        raise InvalidRequest(
            f"'{param}.window_seconds' must be in [1, {MAX_WINDOW}].",
            param=f"{param}.window_seconds",
        )
    return value


def spec(value: KeySpec, now: float) -> KeySpec:
    organization_id(value.organization_id)
    name(value.name)
    if value.default_model is not None:
        model(value.default_model, "default_model")
    if len(value.allowed_models) > MAX_MODELS:
        raise InvalidRequest(f"At most {MAX_MODELS} allowed models.", param="allowed_models")
    for m in value.allowed_models:
        model(m, "allowed_models")
    if len(value.allowed_agents) > MAX_MODELS:
        raise InvalidRequest(f"At most {MAX_MODELS} allowed agents.", param="allowed_agents")
    for a in value.allowed_agents:
        model(a, "allowed_agents")
    allowed, default = value.allowed_models, value.default_model
    if allowed and default is not None and default not in allowed:
        raise InvalidRequest(
            "'default_model' must be one of the key's allowed models.", param="default_model"
        )
    rate(value.rate)
    budget = value.budget_usd
    if budget is not None and not (math.isfinite(budget) and budget >= 0):
        raise InvalidRequest(
            "'budget_usd' must be a number of USD, at least 0.", param="budget_usd"
        )
    if value.expires_at is not None and not now < value.expires_at <= MAX_EXPIRE_TIME:
        raise InvalidRequest(
            f"'expire_time' must be in the future, at most {MAX_EXPIRE_TIME}.",
            param="expire_time",
        )
    return value


def is_key_id(value: str) -> bool:
    return bool(KEY_ID.fullmatch(value))
