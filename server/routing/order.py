"""Which endpoints may serve a request, and in what order (OpenRouter's `provider` object).

Pure functions of the request, the catalog's endpoints and measured stats,
so every preference is testable on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from server.errors import InvalidRequest, ProviderError, UnsupportedParameter
from server.routing.catalog import Catalog, Endpoint
from server.routing.stats import PERCENTILES, Stats
from tokenwire.chat.v1 import chat_pb2, routing_pb2

Prefs = routing_pb2.ProviderPreferences


def candidates(
    request: chat_pb2.CreateChatCompletionRequest,
    catalog: Catalog,
    stats: Stats,
    missing: Callable[[Endpoint], tuple[str, ...]],
    default_model: str | None = None,
) -> list[Endpoint]:
    """Endpoints to try in order: each model of `model` + `models`, filtered and sorted.

    `missing(e)` names the given parameters `e` cannot honour; with
    `require_parameters` such endpoints are skipped (400 naming them if none is left).
    """
    models = models_of(request, default_model or catalog.default_model)
    if request.parameters.HasField("provider"):
        out = _by_preferences(request.parameters.provider, models, catalog, stats, missing)
    else:  # no preferences: every endpoint in configured order, as `_by_preferences` keeps
        out = [e for model in models for e in catalog.endpoints(model)]
    if not out:
        raise ProviderError(
            "No provider can serve this request with the given model and provider preferences.",
            code="no_provider",
        )
    return out


def _by_preferences(
    prefs: Prefs,
    models: list[str],
    catalog: Catalog,
    stats: Stats,
    missing: Callable[[Endpoint], tuple[str, ...]],
) -> list[Endpoint]:
    out: list[Endpoint] = []
    excluded: list[tuple[Endpoint, str]] = []  # each endpoint left out, and by which preference
    unsupported: list[tuple[Endpoint, tuple[str, ...]]] = []
    for model in models:
        endpoints = []
        for e in catalog.endpoints(model):
            reason = excluded_by(prefs, e)
            if reason is None:
                endpoints.append(e)
            else:
                excluded.append((e, reason))
        if prefs.require_parameters:
            unsupported += [(e, missing(e)) for e in endpoints if missing(e)]
            endpoints = [e for e in endpoints if not missing(e)]
        out.extend(arrange(prefs, endpoints, stats))
    if not prefs.order and not prefs.sort and _soft(prefs):
        # Soft preferences rank across the fallback models too: a fallback model that
        # meets them may serve before a primary that does not (OpenRouter's rule).
        out.sort(key=lambda e: not _preferred(prefs, e, stats))  # stable
    if not out and unsupported and not excluded:
        e, names = unsupported[0]
        raise UnsupportedParameter(
            f"Provider '{e.name}' cannot honour {', '.join(names)} and "
            "provider.require_parameters is true.",
            param=names[0],
        )
    if not out:
        raise _nothing_left(excluded, unsupported)
    return out


def _nothing_left(
    excluded: list[tuple[Endpoint, str]], unsupported: list[tuple[Endpoint, tuple[str, ...]]]
) -> InvalidRequest:
    """400 saying which preference left out each endpoint, so the caller can relax one."""
    why = [f"{e.name} ({e.model}) by provider.{reason}" for e, reason in excluded]
    why += [
        f"{e.name} ({e.model}) by provider.require_parameters: it cannot honour {', '.join(n)}"
        for e, n in unsupported
    ]
    first = excluded[0][1] if excluded else "require_parameters"
    return InvalidRequest(
        f"No provider is left after the provider preferences: {'; '.join(why)}.",
        param=f"provider.{first}",
        code="no_allowed_providers",
    )


def models_of(request: chat_pb2.CreateChatCompletionRequest, default: str | None) -> list[str]:
    """`model` first, then the `models` fallbacks, each once; the default when neither."""
    fallbacks = request.parameters.models
    if not request.model and fallbacks:
        return list(dict.fromkeys(fallbacks))
    first = request.model or default or ""
    return list(dict.fromkeys([first, *fallbacks]))


def excluded_by(prefs: Prefs, e: Endpoint) -> str | None:
    """The hard filter (`only`, `ignore`, data policy, price…) that keeps `e` from serving."""
    if prefs.only and e.name not in prefs.only:
        return "only"
    if e.name in prefs.ignore:
        return "ignore"
    if prefs.quantizations and (e.quantization or "unknown") not in prefs.quantizations:
        return "quantizations"
    if prefs.data_collection == routing_pb2.DATA_COLLECTION_DENY and e.data_collection != "deny":
        return "data_collection"
    if prefs.zdr and not e.zdr:
        return "zdr"
    if not _within_price(prefs, e):
        return "max_price"
    return None


def _within_price(prefs: Prefs, e: Endpoint) -> bool:
    m = prefs.max_price
    return (not m.HasField("prompt") or e.prompt_price <= m.prompt) and (
        not m.HasField("completion") or e.completion_price <= m.completion
    )


def arrange(prefs: Prefs, endpoints: Sequence[Endpoint], stats: Stats) -> list[Endpoint]:
    """Order by `order`, else `sort`, else configured order with preferred ones first.

    With fallbacks off, the first of that order is the only candidate.
    """
    if prefs.order:
        ranked = {slug: i for i, slug in enumerate(prefs.order)}
        named = sorted((e for e in endpoints if e.name in ranked), key=lambda e: ranked[e.name])
        rest = [e for e in endpoints if e.name not in ranked]
        ordered = named + rest
        return ordered if _fallbacks(prefs) else named[:1] or ordered[:1]
    ordered = _sorted(prefs, list(endpoints), stats)
    if not prefs.sort and _soft(prefs):
        ordered.sort(key=lambda e: not _preferred(prefs, e, stats))  # stable
    return ordered if _fallbacks(prefs) else ordered[:1]


def _fallbacks(prefs: Prefs) -> bool:
    return not prefs.HasField("allow_fallbacks") or prefs.allow_fallbacks


def _sorted(prefs: Prefs, endpoints: list[Endpoint], stats: Stats) -> list[Endpoint]:
    if prefs.sort == routing_pb2.PROVIDER_SORT_PRICE:
        return sorted(endpoints, key=lambda e: e.prompt_price + e.completion_price)
    if prefs.sort == routing_pb2.PROVIDER_SORT_THROUGHPUT:
        return sorted(endpoints, key=lambda e: -(stats.throughput(e.name, e.model) or 0.0))
    if prefs.sort == routing_pb2.PROVIDER_SORT_LATENCY:
        return sorted(endpoints, key=lambda e: stats.latency(e.name, e.model) or float("inf"))
    return endpoints


def _soft(prefs: Prefs) -> bool:
    """Whether `preferred_min_throughput` or `preferred_max_latency` is given."""
    return bool(
        prefs.WhichOneof("preferred_min_throughput") or prefs.WhichOneof("preferred_max_latency")
    )


def _preferred(prefs: Prefs, e: Endpoint, stats: Stats) -> bool:
    """Meets `preferred_min_throughput` and `preferred_max_latency` (unknown stats pass)."""
    for p in PERCENTILES:
        floor = _threshold(prefs, "preferred_min_throughput", p)
        if floor is not None:
            measured = stats.throughput(e.name, e.model, p)
            if measured is not None and measured < floor:
                return False
        ceiling = _threshold(prefs, "preferred_max_latency", p)
        if ceiling is not None:
            latency = stats.latency(e.name, e.model, p)
            if latency is not None and latency > ceiling:
                return False
    return True


def _threshold(prefs: Prefs, name: str, percentile: str) -> float | None:
    which = prefs.WhichOneof(name)  # type: ignore[call-overload]
    if which == f"{name}_p50":
        return float(getattr(prefs, which)) if percentile == "p50" else None
    if which == f"{name}_percentiles":
        cutoffs = getattr(prefs, which)
        return float(getattr(cutoffs, percentile)) if cutoffs.HasField(percentile) else None
    return None
