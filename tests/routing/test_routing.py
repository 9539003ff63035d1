"""Routing without a network: which endpoints serve a request and in what order, transforms,
circuit breakers, measured stats, the catalog, the router's retries and error aggregation,
and the config file's `[providers.*]` / `[[models]]` tables.

Endpoints are backed by `FakeProvider`s; every `provider` preference is checked against
the order it would give without that preference.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from server.errors import (
    BadUpstream,
    InvalidRequest,
    NotFound,
    ProviderError,
    RateLimited,
    TokenwireError,
    UnsupportedParameter,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from server.pipeline import parameters, transforms
from server.pipeline.context import CallInfo, RequestContext
from server.providers import base
from server.providers.fake import ALL_PARAMETERS, FakeConfig, FakeProvider
from server.providers.http.anthropic import AnthropicProvider
from server.providers.http.openai import OpenAICompatProvider
from server.routing import order
from server.routing.breaker import Breaker, BreakerConfig, Breakers
from server.routing.catalog import Catalog, Endpoint
from server.routing.router import RetryPolicy, Router, exhausted
from server.routing.stats import Stats
from server.runtime import compose
from server.runtime.config import load
from tests.chat_requests import GENERATION, chat_request
from tests.limits.clock import Clock
from tokenwire.chat.v1 import chat_pb2, routing_pb2

Prefs = routing_pb2.ProviderPreferences


def endpoint(name: str, model: str = "m", **attrs: Any) -> Endpoint:
    supported = attrs.pop("supported", ALL_PARAMETERS)
    error = attrs.pop("error", None)
    config = FakeConfig(name=name, model_id=model, supported=supported, error=error)
    return Endpoint(model, FakeProvider(config), f"{name}-{model}", **attrs)


def ask(model: str = "m", *, models: tuple[str, ...] = (), **params: Any) -> Any:
    """A request for `model`; keyword arguments that are not request fields are preferences."""
    own = chat_pb2.CreateChatCompletionRequest.DESCRIPTOR.fields_by_name
    prefs = {k: params.pop(k) for k in list(params) if k not in own and k not in GENERATION}
    request = chat_request(model, "hi", models=models, **params)
    if prefs:
        request.parameters.provider.CopyFrom(Prefs(**prefs))
    return request


def plan(endpoints: list[Endpoint], request: Any, stats: Stats | None = None) -> list[str]:
    found = order.candidates(
        request,
        Catalog(endpoints),
        stats or Stats(),
        lambda e: parameters.missing(request, e.provider.supported),
    )
    return [e.name for e in found]


ABC = [endpoint("a"), endpoint("b"), endpoint("c")]


# --- candidates: models, order, filters ----------------------------------------------------


def test_configured_order_is_the_default() -> None:
    assert plan(ABC, ask()) == ["a", "b", "c"]


def test_models_are_fallbacks_in_order_each_once() -> None:
    catalog = [endpoint("a", "m1"), endpoint("b", "m2"), endpoint("c", "m3")]
    assert plan(catalog, ask("m1", models=("m3", "m2", "m1"))) == ["a", "c", "b"]


def test_models_without_model_start_with_the_first_of_them() -> None:
    catalog = [endpoint("a", "m1"), endpoint("b", "m2"), endpoint("c", "m3")]
    assert plan(catalog, ask("")) == ["a"]  # the catalog's default model
    assert plan(catalog, ask("", models=("m3", "m2"))) == ["c", "b"]


def test_unknown_fallback_model_is_named() -> None:
    with pytest.raises(NotFound, match="'nope'"):
        plan([endpoint("a", "m1")], ask("m1", models=("nope",)))


def test_order_puts_the_named_providers_first() -> None:
    assert plan(ABC, ask(order=["c", "a"])) == ["c", "a", "b"]
    assert plan(ABC, ask(order=["nobody", "b"])) == ["b", "a", "c"]


def test_only_and_ignore() -> None:
    assert plan(ABC, ask(only=["c", "b"])) == ["b", "c"]
    assert plan(ABC, ask(ignore=["b"])) == ["a", "c"]
    with pytest.raises(InvalidRequest) as caught:  # the caller's preferences: 400, not 503
        plan(ABC, ask(only=["b"], ignore=["b"]))
    assert (caught.value.http_status, caught.value.code) == (400, "no_allowed_providers")


def test_allow_fallbacks_false_keeps_only_the_primary() -> None:
    assert plan(ABC, ask(allow_fallbacks=False)) == ["a"]
    assert plan(ABC, ask(allow_fallbacks=False, order=["b", "c"])) == ["b"]
    assert plan(ABC, ask(allow_fallbacks=True, order=["b"])) == ["b", "a", "c"]


def test_require_parameters_skips_providers_lacking_one() -> None:
    no_seed = ALL_PARAMETERS - {"seed"}
    catalog = [endpoint("a", supported=no_seed), endpoint("b"), endpoint("c", supported=no_seed)]
    assert plan(catalog, ask(seed=1)) == ["a", "b", "c"]
    assert plan(catalog, ask(seed=1, require_parameters=True)) == ["b"]
    with pytest.raises(UnsupportedParameter, match="'a' cannot honour seed") as caught:
        plan([catalog[0], catalog[2]], ask(seed=1, require_parameters=True))
    assert (caught.value.param, caught.value.http_status) == ("seed", 400)


def test_max_price() -> None:
    catalog = [
        endpoint("a", prompt_price=1, completion_price=2),
        endpoint("b", prompt_price=5, completion_price=1),
        endpoint("c", prompt_price=1, completion_price=10),
    ]
    assert plan(catalog, ask(max_price=routing_pb2.MaxPrice(prompt=2))) == ["a", "c"]
    assert plan(catalog, ask(max_price=routing_pb2.MaxPrice(completion=2))) == ["a", "b"]
    assert plan(catalog, ask(max_price=routing_pb2.MaxPrice(prompt=2, completion=2))) == ["a"]


def test_data_collection_deny() -> None:
    catalog = [endpoint("a", data_collection="allow"), endpoint("b", data_collection="deny")]
    assert plan(catalog, ask(data_collection=routing_pb2.DATA_COLLECTION_ALLOW)) == ["a", "b"]
    assert plan(catalog, ask(data_collection=routing_pb2.DATA_COLLECTION_DENY)) == ["b"]


def test_zdr() -> None:
    catalog = [endpoint("a", zdr=False), endpoint("b", zdr=True)]
    assert plan(catalog, ask(zdr=False)) == ["a", "b"]
    assert plan(catalog, ask(zdr=True)) == ["b"]


def test_quantizations() -> None:
    catalog = [endpoint("a", quantization="fp8"), endpoint("b", quantization="int4"), endpoint("c")]
    assert plan(catalog, ask(quantizations=["fp8"])) == ["a"]
    assert plan(catalog, ask(quantizations=["int4", "unknown"])) == ["b", "c"]


# --- candidates: sorting and soft preferences ----------------------------------------------


def observed(**by_provider: tuple[list[float], list[float]]) -> Stats:
    """Stats for model `m`: per provider, latencies (s) and throughputs (tokens/s)."""
    stats = Stats()
    for name, (latencies, throughputs) in by_provider.items():
        for latency in latencies:
            stats.observe(name, "m", latency, 0, 0.0)
        for rate in throughputs:
            stats.observe(name, "m", 0.1, int(rate * 10), 10.0)
    return stats


def test_sort_by_price() -> None:
    catalog = [
        endpoint("a", prompt_price=3, completion_price=3),
        endpoint("b", prompt_price=1, completion_price=1),
        endpoint("c", prompt_price=2, completion_price=2),
    ]
    assert plan(catalog, ask(sort=routing_pb2.PROVIDER_SORT_PRICE)) == ["b", "c", "a"]


def test_sort_by_throughput_and_latency_uses_measured_stats() -> None:
    stats = observed(a=([0.5], [10.0]), b=([0.1], [100.0]))
    assert plan(ABC, ask(), stats) == ["a", "b", "c"]
    assert plan(ABC, ask(sort=routing_pb2.PROVIDER_SORT_THROUGHPUT), stats) == ["b", "a", "c"]
    stats = observed(a=([0.5], []), b=([0.1], []))
    assert plan(ABC, ask(sort=routing_pb2.PROVIDER_SORT_LATENCY), stats) == ["b", "a", "c"]


def test_preferred_min_throughput_number_and_percentiles() -> None:
    stats = observed(a=([], [10, 10, 10, 100]), b=([], [50, 50, 50, 50]))
    catalog = [endpoint("a"), endpoint("b"), endpoint("c")]  # c: unmeasured, never demoted
    assert plan(catalog, ask(preferred_min_throughput_p50=30), stats) == ["b", "c", "a"]
    high_p90 = routing_pb2.Percentiles(p90=60)
    catalog = [endpoint("b"), endpoint("a")]
    assert plan(catalog, ask(), stats) == ["b", "a"]
    assert plan(catalog, ask(preferred_min_throughput_percentiles=high_p90), stats) == ["a", "b"]


def test_preferred_max_latency_number_and_percentiles() -> None:
    stats = observed(a=([0.1, 0.1, 0.1, 5.0], []), b=([0.5, 0.5, 0.5, 0.5], []))
    assert plan(ABC, ask(preferred_max_latency_p50=0.3), stats) == ["a", "c", "b"]
    low_p99 = routing_pb2.Percentiles(p99=1.0)
    assert plan(ABC, ask(preferred_max_latency_percentiles=low_p99), stats) == ["b", "c", "a"]


def test_preferences_can_put_a_fallback_model_first() -> None:
    # OpenRouter: "this may cause a fallback model to be used instead of the primary model".
    catalog = [endpoint("a", "m1"), endpoint("b", "m2")]
    stats = Stats()
    stats.observe("a", "m1", 0.1, 100, 10.0)  # 10 tokens/s
    stats.observe("b", "m2", 0.1, 1000, 10.0)  # 100 tokens/s
    request = ask("m1", models=("m2",), preferred_min_throughput_p50=50)
    assert plan(catalog, ask("m1", models=("m2",)), stats) == ["a", "b"]
    assert plan(catalog, request, stats) == ["b", "a"]


# --- transforms --------------------------------------------------------------------------


def turn(role: str, text: str, **extra: Any) -> base.Message:
    return base.Message(role=role, content=text, **extra)


def test_middle_out_keeps_system_and_latest_turns() -> None:
    long = "x" * 400  # about 100 tokens a message
    chat = [turn("system", "be brief")]
    chat += [turn("user" if i % 2 == 0 else "assistant", f"{i} {long}") for i in range(20)]
    chat.append(turn("user", "the latest question"))
    kept = transforms.middle_out(chat, budget=600)
    assert kept[0] == chat[0] and kept[-2:] == tuple(chat[-2:])
    assert kept[1] == chat[1]  # middle-out: the oldest turn stays too
    assert len(kept) < len(chat) and transforms.estimate_tokens(kept) <= 600
    assert transforms.middle_out(chat, budget=100_000) == tuple(chat)


def test_middle_out_never_drops_the_last_message() -> None:
    chat = [turn("system", "s"), turn("user", "y" * 4000)]
    assert transforms.middle_out(chat, budget=10) == tuple(chat)


def test_middle_out_keeps_tool_calls_and_results_paired() -> None:
    chat: list[base.Message] = [turn("user", "start")]
    for i in range(6):
        call = base.ToolCall(f"call_{i}", "lookup", "{}")
        chat.append(base.Message(role="assistant", tool_calls=(call,)))
        chat.append(turn("tool", "r" * 200, tool_call_id=call.id))
        chat.append(turn("user", f"next {i}"))
    for budget in range(20, 400, 7):
        kept = transforms.middle_out(chat, budget)
        calls = {c.id for m in kept for c in m.tool_calls}
        results = {m.tool_call_id for m in kept if m.role == "tool"}
        assert calls == results, f"budget {budget}: calls {calls} results {results}"
        assert kept[-1] == chat[-1]


def test_unknown_transform_is_refused_by_position() -> None:
    transforms.check(["middle-out"])
    with pytest.raises(InvalidRequest) as caught:
        transforms.check(["middle-out", "top-down"])
    assert caught.value.param == "transforms[1]"
    assert "top-down" in caught.value.message


# --- breakers and stats -------------------------------------------------------------------


DOWN = ProviderError("cannot connect")  # no answer at all: the provider's failure


def test_breaker_opens_on_its_failure_rate_once_enough_calls_are_seen() -> None:
    # The rule changed from "N failures in a row" to a failure rate over a window.
    clock = Clock()
    config = BreakerConfig(window=60, min_requests=4, failure_rate=0.6, cooldown=10)
    breaker = Breaker(config, clock)
    breaker.failure(None, DOWN)
    breaker.failure(None, DOWN)
    breaker.success(None)  # 2 of 3 failed: too few calls to judge
    breaker.success(None)  # 2 of 4: under the rate
    assert breaker.state == "closed" and breaker.allow(None)
    breaker.failure(None, DOWN)  # 3 of 5
    assert breaker.state == "open" and not breaker.allow(None)


def test_breaker_forgets_outcomes_older_than_its_window() -> None:
    clock = Clock()
    breaker = Breaker(BreakerConfig(window=60, min_requests=3, cooldown=10), clock)
    breaker.failure(None, DOWN)
    breaker.failure(None, DOWN)
    clock.now += 60
    breaker.failure(None, DOWN)  # the first two are out of the window: one call seen
    assert breaker.state == "closed"


def test_breaker_probes_once_after_cooldown() -> None:
    clock = Clock()
    breaker = Breaker(BreakerConfig(min_requests=1, cooldown=10), clock)
    breaker.failure(None, DOWN)
    clock.now += 9.9
    assert not breaker.allow(None)
    clock.now += 0.1
    assert breaker.state == "half-open"
    assert breaker.allow(None) and not breaker.allow("org")  # one probe at a time
    breaker.failure(None, DOWN)  # the probe failed: a whole new cooldown
    clock.now += 9.9
    assert breaker.state == "open" and not breaker.allow(None)
    clock.now += 0.1
    assert breaker.allow(None)
    breaker.success(None)
    assert breaker.state == "closed" and breaker.allow(None) and breaker.allow(None)


def test_breakers_are_per_provider() -> None:
    breakers = Breakers(BreakerConfig(min_requests=1, cooldown=10), Clock())
    breakers["a"].failure(None, DOWN)
    assert not breakers["a"].allow(None) and breakers["b"].allow(None)
    assert breakers["a"] is breakers["a"]


def test_stats_percentiles_and_unknowns() -> None:
    stats = Stats()
    assert stats.latency("a", "m") is None and stats.throughput("a", "m") is None
    for latency in (0.4, 0.1, 0.3, 0.2):
        stats.observe("a", "m", latency, 20, 2.0)
    stats.observe("a", "m", 9.0, 1, 1.0)  # one token says nothing about throughput
    assert stats.latency("a", "m", "p50") == 0.3
    assert stats.latency("a", "m", "p99") == 9.0
    assert stats.throughput("a", "m") == 10.0
    assert stats.latency("a", "other") is None


# --- catalog ------------------------------------------------------------------------------


def test_catalog_aliases_pins_and_unknown_models() -> None:
    gpt = endpoint("a", "gpt", aliases=("mini",))
    catalog = Catalog([gpt, endpoint("b", "gpt"), endpoint("c", "other")], default_model="other")
    assert catalog.canonical("mini") == "gpt"
    assert [e.name for e in catalog.endpoints("mini")] == ["a", "b"]
    assert [e.name for e in catalog.endpoints("b/gpt")] == ["b"]
    assert catalog.canonical("") == "other"
    assert catalog.aliases_of("gpt") == ["mini"]
    for unknown in ("nope", "c/gpt"):
        with pytest.raises(NotFound, match=f"'{unknown}'") as caught:
            catalog.endpoints(unknown)
        assert caught.value.code == "model_not_found" and caught.value.param == "model"
    with pytest.raises(InvalidRequest):
        Catalog([]).canonical("")


def test_endpoint_cost_is_per_million_tokens() -> None:
    e = endpoint("a", prompt_price=2.0, completion_price=8.0)
    assert e.cost(1_000_000, 500_000) == pytest.approx(6.0)


# --- the router: retries, breakers, attempts, one error at the end -------------------------


def context(request: Any) -> RequestContext:
    return RequestContext(CallInfo("req_test", {}), request, streamed=True)


def router(endpoints: list[Endpoint], clock: Clock | None = None, **policy: Any) -> Router:
    breakers = Breakers(BreakerConfig(min_requests=1, cooldown=10), clock or Clock())
    policy = {"retries": 0, "base_delay": 0.0, **policy}
    return Router(Catalog(endpoints), breakers=breakers, policy=RetryPolicy(**policy))


def seen(e: Endpoint) -> int:
    assert isinstance(e.provider, FakeProvider)
    return len(e.provider.config.seen)


async def test_router_falls_back_and_names_every_attempt() -> None:
    a, b = endpoint("a", error=ProviderError("down")), endpoint("b")
    r, ctx = router([a, b]), context(ask())
    opened = await r.open(ctx, r.plan(ctx))
    assert opened.endpoint is b
    assert [(t.provider, t.outcome, t.error) for t in ctx.attempts] == [
        ("a", "error", "provider_unavailable")
    ]


async def test_router_does_not_fall_back_on_the_callers_mistake() -> None:
    a, b = endpoint("a", error=InvalidRequest("bad prompt")), endpoint("b")
    r, ctx = router([a, b]), context(ask())
    with pytest.raises(InvalidRequest):
        await r.open(ctx, r.plan(ctx))
    assert seen(b) == 0


async def test_router_retries_the_same_endpoint_then_moves_on() -> None:
    a, b = endpoint("a", error=UpstreamUnavailable("down")), endpoint("b")
    r = router([a, b], retries=2, base_delay=0.001)
    r.breakers = Breakers(BreakerConfig(min_requests=5))
    ctx = context(ask())
    assert (await r.open(ctx, r.plan(ctx))).endpoint is b
    assert seen(a) == 3 and [t.provider for t in ctx.attempts] == ["a", "a", "a"]


@pytest.mark.parametrize(
    "error",
    [ProviderError("HTTP 500"), BadUpstream("garbage"), UpstreamTimeout("silent")],
    ids=["5xx", "broken answer", "timeout"],
)
async def test_a_request_the_upstream_may_have_processed_is_not_sent_to_it_again(
    error: TokenwireError,
) -> None:
    a, b = endpoint("a", error=error), endpoint("b")
    r = router([a, b], retries=2, base_delay=0.001)
    ctx = context(ask())
    assert (await r.open(ctx, r.plan(ctx))).endpoint is b  # the next candidate instead
    assert seen(a) == 1
    assert [(t.provider, t.outcome) for t in ctx.attempts] == [("a", "error")]


def test_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    r = Router(Catalog([]), policy=RetryPolicy(3, 0.1, 4.0), jitter=lambda: 0.5)
    down = UpstreamUnavailable("x")
    assert [r._delay(down, n) for n in range(4)] == [0.1, 0.2, 0.4, None]
    r._jitter = lambda: 0.0
    assert r._delay(down, 1) == pytest.approx(0.1)  # half, at the least jitter
    assert r._delay(ProviderError("x"), 0) is None  # it may have been processed: move on
    assert r._delay(UpstreamUnavailable("x", metadata={"retry_after": "2"}), 0) == 2.0
    assert r._delay(UpstreamUnavailable("x", metadata={"retry_after": "60"}), 0) is None
    assert r._delay(RateLimited("x", retry_after=1.5), 0) == 1.5
    assert r._delay(RateLimited("x", retry_after=60), 0) is None  # too long: next endpoint


async def test_open_breaker_skips_the_provider_until_it_is_probed() -> None:
    clock = Clock()
    a, b = endpoint("a", error=ProviderError("down")), endpoint("b")
    r = router([a, b], clock)
    for _ in range(2):
        ctx = context(ask())
        assert (await r.open(ctx, r.plan(ctx))).endpoint is b
    assert seen(a) == 1  # open after one failure: the second request went straight to b
    assert isinstance(a.provider, FakeProvider)
    a.provider.config.error = None
    clock.now += 10
    ctx = context(ask())
    probe = await r.open(ctx, r.plan(ctx))
    assert probe.endpoint is a and r.breakers["a"].state == "half-open"
    r.succeeded(ctx, probe, None)
    assert r.breakers["a"].state == "closed"


async def test_a_probe_refused_for_the_callers_mistake_does_not_wedge_the_breaker() -> None:
    clock = Clock()
    a = endpoint("a", error=ProviderError("down"))
    r = router([a], clock)
    with pytest.raises(ProviderError):
        await r.open(context(ask()), [a])
    clock.now += 10
    assert isinstance(a.provider, FakeProvider)
    a.provider.config.error = InvalidRequest("prompt too long")  # the upstream is up
    with pytest.raises(InvalidRequest):
        await r.open(context(ask()), [a])
    assert r.breakers["a"].allow(None)


async def test_a_cancelled_probe_does_not_wedge_the_breaker() -> None:
    clock = Clock()
    a = endpoint("a", error=ProviderError("down"))
    r = router([a], clock)
    with pytest.raises(ProviderError):
        await r.open(context(ask()), [a])
    clock.now += 10
    assert isinstance(a.provider, FakeProvider)
    config = a.provider.config
    config.error, config.gate, config.gate_at = None, asyncio.Event(), 0  # never opens
    task = asyncio.ensure_future(r.open(context(ask()), [a]))
    for _ in range(100):
        if len(config.seen) == 2:
            break
        await asyncio.sleep(0)  # let the task reach the provider
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert r.breakers["a"].allow(None)


def test_exhausted_keeps_the_kind_when_all_failed_alike() -> None:
    busy = [RateLimited("a busy", retry_after=7), RateLimited("b busy", retry_after=3)]
    limited = exhausted(list[TokenwireError](busy))
    assert isinstance(limited, RateLimited) and limited.retry_after == 3
    assert limited.metadata["retry_after"] == "3"
    timeout = exhausted([UpstreamTimeout("a slow"), UpstreamTimeout("b slow")])
    assert isinstance(timeout, UpstreamTimeout) and timeout.http_status == 504
    garbage = exhausted([BadUpstream("a garbled")])
    assert garbage.http_status == 502
    nothing = exhausted([])
    assert (nothing.http_status, nothing.code) == (503, "no_provider")


def test_exhausted_mixed_failures_keep_every_upstream_message() -> None:
    errors: list[TokenwireError] = [
        RateLimited("a is rate limiting", retry_after=1, metadata={"upstream_message": "quota"}),
        ProviderError("b failed (HTTP 503)", metadata={"upstream_message": "overloaded"}),
    ]
    error = exhausted(errors)
    assert (type(error), error.http_status, error.code) == (ProviderError, 503, "no_provider")
    text = " ".join(error.metadata.values())
    assert "quota" in text and "overloaded" in text and "a is rate limiting" in text


# --- config file --------------------------------------------------------------------------

CONFIG = """
default_model = "chat"
provider = "none"

[providers.up]
base_url = "http://127.0.0.1:9/v1/"
api_key_env = "X_KEY"
headers = { "X-Title" = "tokenwire" }
first_byte_timeout = 2
data_collection = "deny"
supported = ["temperature"]

[providers.claude]
kind = "anthropic"
base_url = "http://127.0.0.1:9"
zdr = true

[[models]]
id = "chat"
provider = "up"
upstream = "gpt-x"
aliases = ["c"]
context_length = 1000
prompt_price = 0.5
completion_price = 1.5
quantization = "fp8"

[[models]]
id = "chat"
provider = "claude"
data_collection = "allow"
"""


def test_config_file_builds_providers_and_endpoints(tmp_path: Path) -> None:
    path = tmp_path / "tokenwire.toml"
    path.write_text(CONFIG)
    config = load({"config": str(path)}, environ={"X_KEY": "secret"})
    assert (config.default_model, config.provider) == ("chat", "none")
    up = config.upstreams.providers[0]
    assert (up.config.api_key, up.config.base_url) == ("secret", "http://127.0.0.1:9/v1")
    assert dict(up.config.headers) == {"X-Title": "tokenwire"}
    assert (up.config.first_byte_timeout, up.config.supported) == (2.0, frozenset({"temperature"}))
    assert "secret" not in repr(config)
    providers = compose.upstream_providers(config.upstreams)
    assert isinstance(providers["up"], OpenAICompatProvider)
    assert isinstance(providers["claude"], AnthropicProvider)
    first, second = compose.upstream_endpoints(config.upstreams, providers, created=1)
    assert (first.upstream_model, first.aliases, first.context_length) == ("gpt-x", ("c",), 1000)
    assert (first.prompt_price, first.completion_price, first.quantization) == (0.5, 1.5, "fp8")
    assert (first.data_collection, first.zdr) == ("deny", False)  # the provider's
    assert (second.upstream_model, second.data_collection, second.zdr) == ("chat", "allow", True)
    assert Catalog([first, second]).canonical("c") == "chat"


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ('[providers.x]\nkind = "grpc"\nbase_url = "http://h"', "[providers.x]"),
        ("[providers.x]\nkind = 'openai'", "[providers.x]: base_url is required"),
        ('[providers.x]\nbase_url = "http://h"\napi_key = "sk-in-file"', "[providers.x]"),
        ('[providers.x]\nbase_url = "http://h"\ndata_collection = "maybe"', "[providers.x]"),
        ('[providers.x]\nbase_url = "ftp://h"', "upstream x"),
        ('[providers.x]\nbase_url = "http://h"\nfirst_byte_timeout = 0', "upstream x"),
        ('[[models]]\nid = "m"\nprovider = "nobody"', "[[models]] #1: unknown provider"),
        ('[providers.x]\nbase_url = "http://h"\n[[models]]\nprovider = "x"', "[[models]] #1"),
        ('[providers.x]\nbase_url = "http://h"\n[[models]]\nid="m"\nprovider="x"\nprice=1', "#1"),
    ],
)
def test_bad_config_entries_name_their_table(tmp_path: Path, toml: str, where: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ValueError) as caught:
        load({"config": str(path)}, environ={})
    assert where in str(caught.value)
