"""Plain text for the terminal: aligned tables and the times CLI flags accept."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers aligned right."""
    cells = [[_text(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(r) for r in cells)])


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.6f}".rstrip("0") if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def parse_time(text: str, now: float, *, future: bool = False) -> float:
    """`2025-01-31`, `2025-01-31T12:00:00+00:00` (UTC when no zone), or `7d`/`12h`/`30m`.

    A relative duration counts back from `now` (`--since 7d`), or forward with
    `future` (`--expires 30d`).
    """
    match = _RELATIVE.match(text.strip())
    if match:
        delta = int(match.group(1)) * _SECONDS[match.group(2)]
        return now + delta if future else now - delta
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use 2025-01-31, an ISO time, or 7d)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def when(seconds: float | None) -> str:
    """Unix seconds as UTC, to the minute; `-` for none."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")
