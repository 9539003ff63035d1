"""Filters and dimensions over usage records, as SQL for SQLite and PostgreSQL alike.

Grouped columns get `d_` aliases: PostgreSQL reads an ambiguous GROUP BY name
as the input column, and `model` groups by `COALESCE(model, model_requested)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from server.storage.database import Dialect


class Dimension(StrEnum):
    SESSION = "session"
    KEY = "key"
    ORGANIZATION = "organization"
    MODEL = "model"
    USER = "user"
    PROVIDER = "provider"
    STATUS = "status"
    HOUR = "hour"
    DAY = "day"
    TRACE = "trace"


_COLUMN = {
    Dimension.SESSION: "session_id",
    Dimension.KEY: "key_id",
    Dimension.ORGANIZATION: "organization_id",
    Dimension.MODEL: "COALESCE(model, model_requested)",
    Dimension.USER: "end_user",
    Dimension.PROVIDER: "provider",
    Dimension.STATUS: "status",
    Dimension.TRACE: "trace_id",
}
_PERIOD = {Dimension.HOUR: 3600, Dimension.DAY: 86400}

AGGREGATES = (
    "COUNT(*) AS requests",
    "SUM(CASE WHEN http_status >= 400 AND cancelled = 0 THEN 1 ELSE 0 END) AS errors",
    "SUM(cancelled) AS cancelled",
    "SUM(prompt_tokens) AS prompt_tokens",
    "SUM(completion_tokens) AS completion_tokens",
    "SUM(cached_tokens) AS cached_tokens",
    "SUM(cost_usd) AS cost_usd",
    "AVG(latency_ms) AS mean_latency_ms",
    "AVG(ttft_ms) AS mean_ttft_ms",
)


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which records count (None: any); `start` inclusive, `end` exclusive, Unix seconds."""

    organization_id: str | None = None
    key_id: str | None = None
    session_id: str | None = None
    model: str | None = None
    user: str | None = None
    trace_id: str | None = None
    start: float | None = None
    end: float | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = ["1 = 1"]
        args: list[Any] = []
        for column, value in (
            ("organization_id", self.organization_id),
            ("key_id", self.key_id),
            ("session_id", self.session_id),
            (_COLUMN[Dimension.MODEL], self.model),
            ("end_user", self.user),
            ("trace_id", self.trace_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if self.start is not None:
            clauses.append("created >= ?")
            args.append(float(self.start))
        if self.end is not None:
            clauses.append("created < ?")
            args.append(float(self.end))
        return " AND ".join(clauses), args


def column(dimension: Dimension, dialect: Dialect) -> str:
    """The SQL expression a dimension groups by."""
    if dimension in _PERIOD:
        size = _PERIOD[dimension]
        if dialect == "postgres":
            return f"((FLOOR(created)::BIGINT / {size}) * {size})"
        return f"((CAST(created AS INTEGER) / {size}) * {size})"
    return _COLUMN[dimension]


def aggregate_sql(
    usage_filter: UsageFilter, group_by: tuple[Dimension, ...], dialect: Dialect
) -> tuple[str, list[Any]]:
    where, args = usage_filter.where()
    dims = [f"{column(d, dialect)} AS d_{d.value}" for d in group_by]
    sql = f"SELECT {', '.join([*dims, *AGGREGATES])} FROM usage_records WHERE {where}"
    if group_by:
        positions = [str(i + 1) for i in range(len(group_by))]
        order = ", ".join(f"{p} NULLS FIRST" for p in positions)
        sql += f" GROUP BY {', '.join(positions)} ORDER BY {order}"
    return sql, args
