"""OpenAI's rate-limit headers from a verdict.

    x-ratelimit-limit-requests      x-ratelimit-limit-tokens
    x-ratelimit-remaining-requests  x-ratelimit-remaining-tokens
    x-ratelimit-reset-requests      x-ratelimit-reset-tokens   ("1s", "6m0s", "20ms")

With several scopes (key, organization, IP) each header pair describes the
tightest one: the scope with the fewest remaining requests (or tokens).
"""

from __future__ import annotations

from collections.abc import Callable

from server.limits.base import ScopeState, Verdict


def headers(verdict: Verdict) -> dict[str, str]:
    out: dict[str, str] = {}
    _add(out, verdict, "requests", lambda s: s.check.rate.requests, lambda s: s.remaining_requests)
    _add(out, verdict, "tokens", lambda s: s.check.rate.tokens, lambda s: s.remaining_tokens)
    return out


def _add(
    out: dict[str, str],
    verdict: Verdict,
    kind: str,
    limit: Callable[[ScopeState], int | None],
    remaining: Callable[[ScopeState], int | None],
) -> None:
    states = [s for s in verdict.states if limit(s) is not None]
    if not states:
        return
    tightest = min(states, key=lambda s: (remaining(s) or 0, limit(s) or 0))
    out[f"x-ratelimit-limit-{kind}"] = str(limit(tightest))
    out[f"x-ratelimit-remaining-{kind}"] = str(remaining(tightest))
    out[f"x-ratelimit-reset-{kind}"] = duration(tightest.reset)


def duration(seconds: float) -> str:
    """Seconds in OpenAI's (Go's) style: `20ms`, `1s`, `6m0s`, `1h0m0s`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
