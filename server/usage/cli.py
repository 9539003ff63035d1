"""`tokenwire usage`: aggregated usage as a terminal table (or CSV), straight on the database.

tokenwire usage --since 7d --group-by model --group-by day
tokenwire usage --org acme --group-by key
tokenwire usage --session s-42 --csv > usage.csv
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from server.storage.database import Database
from server.storage.migrations import migrate
from server.usage.csv_export import to_csv
from server.usage.migrations import MIGRATIONS
from server.usage.query import Dimension, UsageFilter
from server.usage.store import Bucket, UsageStore
from server.usage.terminal import parse_time, table, when

_TOTALS = ("REQUESTS", "ERRORS", "PROMPT", "COMPLETION", "CACHED", "COST USD", "MEAN MS")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", help="only this organization")
    parser.add_argument("--key", help="only this API key id")
    parser.add_argument("--session", help="only this session id")
    parser.add_argument("--model", help="only this model")
    parser.add_argument("--user", help="only this end user")
    parser.add_argument("--since", help="start: 2025-01-31, an ISO time, or 7d ago")
    parser.add_argument("--until", help="end (exclusive), same forms")
    parser.add_argument(
        "--group-by",
        action="append",
        choices=[d.value for d in Dimension],
        help="a dimension to group by (repeatable; default: model)",
    )
    parser.add_argument("--csv", action="store_true", help="print every matching record as CSV")
    parser.add_argument("--limit", type=int, default=10_000, help="CSV: at most this many rows")


async def run(args: argparse.Namespace, db: Database, out: TextIO = sys.stdout) -> int:
    await migrate(db, MIGRATIONS)
    store = UsageStore(db)
    try:
        usage_filter = filter_of(args, time.time())
    except ValueError as e:
        print(f"error: {e}", file=out)
        return 1
    if args.csv:
        out.write(to_csv(await store.records(usage_filter, args.limit)))
        return 0
    dims = [Dimension(d) for d in args.group_by or ["model"]]
    buckets = await store.aggregate(usage_filter, dims)
    total = await store.total(usage_filter)
    print(usage_table(dims, buckets, total), file=out)
    return 0


def filter_of(args: argparse.Namespace, now: float) -> UsageFilter:
    return UsageFilter(
        organization_id=args.org,
        key_id=args.key,
        session_id=args.session,
        model=args.model,
        user=args.user,
        start=parse_time(args.since, now) if args.since else None,
        end=parse_time(args.until, now) if args.until else None,
    )


def usage_table(dims: list[Dimension], buckets: list[Bucket], total: Bucket) -> str:
    headers = [d.value.upper() for d in dims] + list(_TOTALS)
    rows = [[_dim(d, b.dimensions[d]) for d in dims] + _totals(b) for b in buckets]
    label: list[object] = ["TOTAL", *[""] * (len(dims) - 1)] if dims else []
    rows.append(label + _totals(total))
    return table(headers, rows)


def _dim(dimension: Dimension, value: object) -> object:
    if dimension in (Dimension.HOUR, Dimension.DAY) and value is not None:
        return when(float(str(value)))
    return value


def _totals(b: Bucket) -> list[object]:
    tokens: list[object] = [b.requests, b.errors, b.prompt_tokens, b.completion_tokens]
    return [*tokens, b.cached_tokens, b.cost_usd, round(b.mean_latency_ms, 1)]
