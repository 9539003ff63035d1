"""The `auto-router` plugin and `model: "auto"`: tokenwire picks the model.

The rule: among `allowed_models` (ids or shell-style patterns such as `claude-*`; unset
means every model the caller's key may use), keep the endpoints whose context fits the
prompt (estimated, plus `max_completion_tokens`), which honour every parameter given and
which pass the request's `provider` filters; then order them by `provider.sort` (by
`provider.order` when given; price when neither is) and take the first one's model.
The response's `model` names the choice.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from server.errors import InvalidRequest
from server.pipeline import convert, parameters, transforms
from server.pipeline.context import RequestContext
from server.routing import order
from server.routing.catalog import Catalog, Endpoint
from server.routing.stats import Stats
from tokenwire.chat.v1 import routing_pb2

AUTO = "auto"


def choose(
    ctx: RequestContext, plugin: routing_pb2.Plugin | None, catalog: Catalog, stats: Stats
) -> str:
    """The model that serves the request, by the rule above."""
    request = ctx.request
    fitting = [e for model in _allowed(ctx, plugin, catalog) for e in catalog.endpoints(model)]
    prompt = transforms.estimate_tokens(convert.messages(request.messages))
    reserve = request.parameters.max_completion_tokens or request.parameters.max_tokens
    prefs = routing_pb2.ProviderPreferences()
    prefs.CopyFrom(request.parameters.provider)
    fitting = [e for e in fitting if _fits(e, prompt + reserve) and _serves(ctx, prefs, e)]
    if not fitting:
        raise InvalidRequest(
            "The auto-router found no allowed model whose context fits this prompt and which "
            "honours every parameter given.",
            param="model",
            code="no_model_fits",
        )
    if not prefs.sort and not prefs.order:
        prefs.sort = routing_pb2.PROVIDER_SORT_PRICE
    prefs.ClearField("allow_fallbacks")
    return order.arrange(prefs, fitting, stats)[0].model


def _allowed(ctx: RequestContext, plugin: routing_pb2.Plugin | None, catalog: Catalog) -> list[str]:
    models = [m for m, _ in catalog.models()]
    patterns = list(plugin.allowed_models) if plugin is not None else []
    if patterns:
        models = [m for m in models if any(fnmatchcase(m, p) for p in patterns)]
    keyed = ctx.principal.allowed_models
    return [m for m in models if keyed is None or m in keyed]


def _fits(e: Endpoint, tokens: int) -> bool:
    return e.context_length is None or tokens <= e.context_length


def _serves(ctx: RequestContext, prefs: routing_pb2.ProviderPreferences, e: Endpoint) -> bool:
    return not parameters.missing(ctx.request, e.provider.supported) and (
        order.excluded_by(prefs, e) is None
    )
