"""A `UsageRecord` as a row of `usage_records` and back, every value bounded on the way in.

A record is kept whatever the request was, refused ones included, so nothing
a client sent is trusted to fit: text loses NUL (PostgreSQL cannot store it)
and lone surrogates and is cut to its column's length; integers are clamped
into PostgreSQL's INTEGER and non-finite floats become 0. One record's value can
then never fail the INSERT that carries other records.
"""

from __future__ import annotations

import json
import math
import operator
from functools import cache
from typing import Any

import orjson

from gateway.metadata import MAX_REQUEST_ID
from server.pipeline.context import Attempt, UsageRecord
from server.storage.database import Row
from server.usage.tags import MAX_SESSION_ID, MAX_USER

FIELDS = (
    "request_id", "created", "key_id", "organization_id", "session_id", "user",
    "model_requested", "model", "provider", "attempts", "prompt_tokens", "completion_tokens",
    "cached_tokens", "estimated", "cost_usd", "latency_ms", "ttft_ms", "status", "http_status",
    "streamed", "cancelled", "template", "template_version", "memory_ids", "trace_id", "trace",
)  # fmt: skip
COLUMNS = ", ".join("end_user" if f == "user" else f for f in FIELDS)
SELECT = f"SELECT {COLUMNS} FROM usage_records"
_BOOLS = ("estimated", "streamed", "cancelled")
_VALUES = operator.attrgetter(*FIELDS)  # a record's values in FIELDS order, in one call

MAX_NAME = 256  # models, providers, organizations, keys, templates: names, never prose
_TEXT = {
    "request_id": MAX_REQUEST_ID,
    "key_id": MAX_NAME,
    "organization_id": MAX_NAME,
    "session_id": MAX_SESSION_ID,
    "user": MAX_USER,
    "model_requested": MAX_NAME,
    "model": MAX_NAME,
    "provider": MAX_NAME,
    "status": 64,
    "template": MAX_NAME,
    "trace_id": MAX_NAME,
    # the JSON of the whole trace: bounded by `server.usage.trace`, so never cut mid-way
    "trace": 16 * 1024,
}
_INTS = ("prompt_tokens", "completion_tokens", "cached_tokens", "http_status", "template_version")
_FLOATS = ("created", "cost_usd", "latency_ms", "ttft_ms")
_INT_MAX = 2**31 - 1  # PostgreSQL INTEGER
# Positions in a row, so `row` works on one list rather than a dict per record.
_TEXT_AT = tuple((FIELDS.index(name), limit) for name, limit in _TEXT.items())
_INTS_AT = tuple(map(FIELDS.index, _INTS))
_FLOATS_AT = tuple(map(FIELDS.index, _FLOATS))
_BOOLS_AT = tuple(map(FIELDS.index, _BOOLS))
_ATTEMPTS, _MEMORY_IDS = FIELDS.index("attempts"), FIELDS.index("memory_ids")


def row(r: UsageRecord, uid: str | None) -> list[Any]:
    """`r`'s values in FIELDS order, bounded, then `uid` (which makes a replay idempotent)."""
    values = [*_VALUES(r), uid]
    for i, limit in _TEXT_AT:
        value = values[i]
        # the usual value (short, plain, without NUL) passes with three cheap checks
        if value is not None and (len(value) > limit or not value.isascii() or "\x00" in value):
            values[i] = text(value, limit)
    for i in _INTS_AT:
        value = values[i]
        if value is not None and not 0 <= value <= _INT_MAX:
            values[i] = min(max(int(value), 0), _INT_MAX)
    for i in _FLOATS_AT:
        value = values[i]
        if value is not None:
            value = float(value)
            values[i] = value if math.isfinite(value) else 0.0
    # orjson writes dataclasses itself; json.dumps of `asdict`s cost more than the rest of the row
    values[_ATTEMPTS] = orjson.dumps(r.attempts).decode()
    values[_MEMORY_IDS] = orjson.dumps(r.memory_ids).decode()
    for i in _BOOLS_AT:
        values[i] = int(values[i])
    return values


def current(values: list[Any]) -> list[Any]:
    """A row a journal kept before the latest columns were added: NULL in each, before `uid`."""
    missing = len(FIELDS) + 1 - len(values)
    return [*values[:-1], *[None] * missing, values[-1]] if missing > 0 else values


def text(value: str, limit: int) -> str:
    """`value` without NUL or lone surrogates, at most `limit` characters."""
    if len(value) > limit:
        value = value[:limit]
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode()
    return value


def quarantined(values: list[Any]) -> list[Any]:
    """A row that failed on its own, with every text as plain ASCII: the last try to keep it."""
    return [v.encode("ascii", "backslashreplace").decode() if isinstance(v, str) else v
            for v in values]  # fmt: skip


@cache
def insert_sql(rows: int) -> str:
    """A multi-row INSERT; a row whose `uid` is already stored (a replay) is skipped."""
    marks = "(" + ", ".join("?" for _ in range(len(FIELDS) + 1)) + ")"
    values = ", ".join([marks] * rows)
    return f"INSERT INTO usage_records ({COLUMNS}, uid) VALUES {values} ON CONFLICT DO NOTHING"


def record_of(r: Row) -> UsageRecord:
    values = {f: r["end_user" if f == "user" else f] for f in FIELDS}
    values["attempts"] = tuple(Attempt(**a) for a in json.loads(values["attempts"]))
    values["memory_ids"] = tuple(json.loads(values["memory_ids"]))
    for name in _BOOLS:
        values[name] = bool(values[name])
    return UsageRecord(**values)
