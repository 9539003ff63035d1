"""Upstream providers and the models they serve, as declared in the config file.

    default_model = "gpt-4o-mini"

    [providers.openai]                 # the slug used in responses and routing
    kind = "openai"                    # openai (any OpenAI-compatible server) | anthropic
    base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"     # the key itself never goes in the file
    headers = { "X-Title" = "tokenwire" }
    connect_timeout = 5                # seconds; also first_byte_timeout, total_timeout
    pool_size = 512                    # connections to the upstream at once (more wait)
    data_collection = "allow"          # allow | deny: may the provider keep request data?
    zdr = false                        # zero data retention

    [[models]]                         # one table per (model, provider) endpoint
    id = "gpt-4o-mini"
    provider = "openai"
    upstream = "gpt-4o-mini"           # the provider's own id (default: id)
    aliases = ["mini"]
    context_length = 128000
    prompt_price = 0.15                # USD per million tokens
    completion_price = 0.60
    cached_price = 0.075               # prompt tokens read from the cache (default: prompt_price)
    cache_write_price = 0.1875         # ... and written to it (default: prompt_price)
    quantization = "fp16"

Parsed once at the edge into frozen specs; API keys are read from the named
environment variables there, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.providers.http.config import UpstreamConfig

KINDS = ("openai", "anthropic")
_PROVIDER_KEYS = {
    "kind",
    "base_url",
    "api_key_env",
    "headers",
    "connect_timeout",
    "first_byte_timeout",
    "total_timeout",
    "data_collection",
    "zdr",
    "supported",
    "max_tokens_param",
    "pool_size",
}
_MODEL_KEYS = {
    "id",
    "provider",
    "upstream",
    "aliases",
    "context_length",
    "prompt_price",
    "completion_price",
    "cached_price",
    "cache_write_price",
    "quantization",
    "data_collection",
    "zdr",
}


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    kind: str
    config: UpstreamConfig
    data_collection: str = "allow"
    zdr: bool = False


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    provider: str
    upstream: str
    aliases: tuple[str, ...] = ()
    context_length: int | None = None
    prompt_price: float = 0.0
    completion_price: float = 0.0
    cached_price: float | None = None  # USD per million prompt tokens read from the cache
    cache_write_price: float | None = None  # ... and written to it
    quantization: str | None = None
    data_collection: str | None = None  # None: the provider's
    zdr: bool | None = None


@dataclass(frozen=True, slots=True)
class Upstreams:
    providers: tuple[UpstreamSpec, ...] = ()
    models: tuple[ModelSpec, ...] = field(default=())


def parse(
    providers: Mapping[str, Any], models: Sequence[Mapping[str, Any]], environ: Mapping[str, str]
) -> Upstreams:
    """Validate the config file's `providers` and `models` tables (ValueError names the fault)."""
    specs = tuple(_provider(name, raw, environ) for name, raw in providers.items())
    names = {s.config.name for s in specs}
    model_specs = tuple(_model(i, raw, names) for i, raw in enumerate(models))
    return Upstreams(specs, model_specs)


def _provider(name: str, raw: Mapping[str, Any], environ: Mapping[str, str]) -> UpstreamSpec:
    where = f"[providers.{name}]"
    _only(raw, _PROVIDER_KEYS, where)
    kind = raw.get("kind", "openai")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}")
    if "base_url" not in raw:
        raise ValueError(f"{where}: base_url is required")
    env = raw.get("api_key_env")
    options: dict[str, Any] = {
        k: float(raw[k])
        for k in ("connect_timeout", "first_byte_timeout", "total_timeout")
        if k in raw
    }
    if "max_tokens_param" in raw:
        options["max_tokens_param"] = raw["max_tokens_param"]
    if "pool_size" in raw:
        options["pool_size"] = int(raw["pool_size"])
    config = UpstreamConfig(
        name=name,
        base_url=raw["base_url"],
        api_key=environ.get(env) if env else None,
        headers=dict(raw.get("headers", {})),
        supported=frozenset(raw["supported"]) if "supported" in raw else None,
        **options,
    )
    return UpstreamSpec(
        kind,
        config,
        _policy(raw.get("data_collection", "allow"), where),
        bool(raw.get("zdr", False)),
    )


def _model(i: int, raw: Mapping[str, Any], providers: set[str]) -> ModelSpec:
    where = f"[[models]] #{i + 1}"
    _only(raw, _MODEL_KEYS, where)
    if "id" not in raw or "provider" not in raw:
        raise ValueError(f"{where}: id and provider are required")
    if raw["provider"] not in providers:
        raise ValueError(f"{where}: unknown provider {raw['provider']!r}")
    policy = raw.get("data_collection")
    return ModelSpec(
        id=raw["id"],
        provider=raw["provider"],
        upstream=raw.get("upstream", raw["id"]),
        aliases=tuple(raw.get("aliases", ())),
        context_length=raw.get("context_length"),
        prompt_price=float(raw.get("prompt_price", 0.0)),
        completion_price=float(raw.get("completion_price", 0.0)),
        cached_price=_price(raw, "cached_price"),
        cache_write_price=_price(raw, "cache_write_price"),
        quantization=raw.get("quantization"),
        data_collection=_policy(policy, where) if policy is not None else None,
        zdr=raw.get("zdr"),
    )


def _price(raw: Mapping[str, Any], name: str) -> float | None:
    return float(raw[name]) if name in raw else None


def _only(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown settings {', '.join(sorted(unknown))}")


def _policy(value: str, where: str) -> str:
    if value not in ("allow", "deny"):
        raise ValueError(f"{where}: data_collection must be allow or deny")
    return value
