"""Usage records as RFC 4180 CSV: a header row of every `UsageRecord` field, one row each.

`created` is Unix seconds; `attempts` and `memory_ids` are JSON text; empty
cells are unknown values (no key, no first token…). Text that a spreadsheet
would run as a formula (`=`, `+`, `-`, `@` first) is prefixed with `'`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from server.pipeline.context import UsageRecord
from server.usage.rows import FIELDS

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def to_csv(records: Iterable[UsageRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(FIELDS)
    for r in records:
        writer.writerow([_cell(name, getattr(r, name)) for name in FIELDS])
    return out.getvalue()


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "attempts":
        return json.dumps([asdict(a) for a in value])
    if name == "memory_ids":
        return json.dumps(list(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    return f"'{text}" if text[:1] in _FORMULA else text
