"""tokenwire's settings: built once at the edge (flags > environment > file > defaults).

Environment variables are `TOKENWIRE_<FIELD>` in upper case (for example
`TOKENWIRE_MODEL_PATH`); the config file is TOML with the same field names
at the top level.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from server.plugins.backend import BackendConfig
from server.plugins.stage import PluginsConfig
from server.providers.llama import models as llama_models
from server.providers.llama.models import LocalModel
from server.runtime.upstreams import Upstreams, parse

ENV_PREFIX = "TOKENWIRE_"


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 50051
    # Which embedded provider serves: `local` (llama.cpp), `fake` (scripted echo) or `none`.
    provider: str = "local"
    # One GGUF file for the local provider to serve instead of its models (below).
    model_path: str | None = None
    # The local models' context window in tokens, unless a [[local_models]] table sets its own.
    n_ctx: int = 4096
    # The config file's [[local_models]]; none means the bundled SmolLM2-135M-Instruct
    # (the default model) and Gemma 3 270M.
    local_models: tuple[LocalModel, ...] = ()
    # Local models kept in memory at once; another is loaded in place of the least recently used.
    max_resident_models: int = 1
    # llama.cpp threads; unset means one per physical core (shared out among workers).
    n_threads: int | None = None
    # The model used when a request names none; unset means the first served.
    default_model: str | None = None
    # Seconds in-flight calls get to finish on SIGTERM.
    grace: float = 10.0
    # Processes serving the same ports (SO_REUSEPORT), each with its own copy of the
    # local model, breakers and, without redis_url, rate-limit counters.
    workers: int = 1
    # Bind the ports with SO_REUSEPORT, as workers do, so several processes share them.
    reuse_port: bool = False
    # Seconds between SSE keepalive comments while a stream is quiet.
    keepalive_interval: float = 15.0
    # Largest accepted request body in bytes.
    max_body_bytes: int = 8 * 1024 * 1024
    # Seconds a client has to send a request's head (request line and headers); then 408.
    head_timeout: float = 10.0
    # Largest request head in bytes, and most headers in one request; beyond either, 431.
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    # Seconds a request body may keep arriving after its first part; then 408.
    body_timeout: float = 30.0
    # Gateway only: the gRPC server to call instead of serving in-process.
    grpc_target: str | None = None
    log_level: str = "info"
    # Log lines as plain `text` or one JSON object per line (`json`).
    log_format: str = "text"
    # One INFO line per chat request (logger tokenwire.access); shown when log_level is info.
    access_log: bool = False
    # Further tries of the same upstream after a retryable error, before the next one.
    retries: int = 1
    # Seconds before the first retry (doubling, with jitter).
    retry_base_delay: float = 0.25
    # A provider's circuit opens when, over the last breaker_window seconds, at least
    # breaker_min_requests calls were made and breaker_failure_rate of them failed; it is
    # probed after breaker_cooldown seconds. Failures an upstream's 5xx answer may owe to a
    # request's content open only the calling organization's circuit (routing/breaker.py).
    breaker_window: float = 60.0
    breaker_min_requests: int = 5
    breaker_failure_rate: float = 0.5
    breaker_cooldown: float = 30.0
    # Organizations whose own circuits for a provider are open at once that open it for all.
    breaker_organizations: int = 3
    # Where the embedded SQLite database (keys, usage, templates, memories) lives.
    data_dir: str = "~/.local/share/tokenwire"
    # A postgresql:// (or sqlite://) URL for shared state; unset means SQLite in data_dir.
    database_url: str | None = None
    # Tokens (~4 characters each) recalled memories may add to a prompt; 0 turns recall off.
    memory_budget_tokens: int = 512
    # Best-matching memories considered, and latest user messages forming the query.
    memory_candidates: int = 8
    memory_recent_messages: int = 2
    # A token for the admin API (`Authorization: Bearer …`, 16+ characters); unset disables it.
    admin_token: str | None = None
    # Serve a non-loopback address without API keys (otherwise start-up refuses).
    allow_open: bool = False
    # Redis for rate limits shared across replicas; unset means an in-process limiter.
    redis_url: str | None = None
    # When Redis is unreachable: let requests through (true) or answer 503 (false).
    limits_fail_open: bool = True
    # Requests per window from one IP without an API key, when open beyond loopback.
    anonymous_ip_requests: int = 60
    anonymous_ip_window: int = 3600
    # Agents: the commands stdio MCP servers may be started with (exact; none refuses stdio),
    # the names of environment variables agents may hand MCP servers, and whether their
    # tools may reach private, loopback and link-local addresses (the SSRF guard).
    mcp_commands: tuple[str, ...] = ()
    mcp_env: tuple[str, ...] = ()
    agent_private_hosts: bool = False
    # Record request metrics and serve them at GET /metrics (Prometheus text format).
    metrics: bool = True
    # Where workers share their metrics (prometheus-client's multiprocess mode); the
    # `--workers` supervisor sets it, under data_dir.
    metrics_dir: str | None = None
    # Send traces to this OTLP/HTTP collector URL (http://host:4318/v1/traces); unset: none.
    otlp_endpoint: str | None = None
    # Seconds finished spans wait to leave in one batch.
    otlp_export_delay: float = 1.0
    # Put prompts, completions and agents' tool arguments and results on spans (bounded;
    # the GenAI conventions' opt-in content attributes). Off: they may hold personal data.
    otlp_capture_content: bool = False
    # Seconds each readiness check (database, Redis) may take before /readyz calls it down.
    readiness_timeout: float = 2.0
    # Seconds between the readiness checks the gRPC health service reports.
    readiness_interval: float = 5.0
    # Upstream providers and models from the config file's [providers.*] and [[models]].
    upstreams: Upstreams = field(default_factory=Upstreams)
    # The services plugins call, from the config file's [moderation], [search] and [ocr].
    plugins: PluginsConfig = field(default_factory=PluginsConfig)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")


def load(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """The config from a file (`flags["config"]`), the environment and flags, in that order."""
    environ = os.environ if environ is None else environ
    config = Config()
    path = flags.get("config") or environ.get(f"{ENV_PREFIX}CONFIG")
    if path:
        config = _from_file(config, Path(path), environ)
    env = {
        f.name: environ[ENV_PREFIX + f.name.upper()]
        for f in fields(Config)
        if ENV_PREFIX + f.name.upper() in environ
    }
    config = _apply(config, env, "environment")
    return _apply(
        config, {k: v for k, v in flags.items() if v is not None and k != "config"}, "flags"
    )


def _from_file(config: Config, path: Path, environ: Mapping[str, str]) -> Config:
    values = tomllib.loads(path.read_text())
    providers, models = values.pop("providers", {}), values.pop("models", [])
    local = values.pop("local_models", [])
    moderation, search = values.pop("moderation", None), values.pop("search", None)
    ocr = values.pop("ocr", None)
    config = _apply(config, values, f"config file {path}")
    try:
        local_models = llama_models.parse(local, config.n_ctx)
        plugins = PluginsConfig(
            moderation=_backend("moderation", moderation, environ),
            search=_backend("search", search, environ),
            ocr=_backend("ocr", ocr, environ),
        )
        return replace(
            config,
            upstreams=parse(providers, models, environ),
            local_models=local_models,
            plugins=plugins,
        )
    except ValueError as e:
        raise ValueError(f"config file {path}: {e}") from None


# Settings only the config file's tables give.
_TABLES = frozenset({"upstreams", "local_models", "plugins"})


def _apply(config: Config, values: Mapping[str, Any], source: str) -> Config:
    known = {f.name: f for f in fields(Config) if f.name not in _TABLES}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown setting {key!r} in {source}")
        changes[key] = _coerce(str(known[key].type), value, key, source)
    return replace(config, **changes)


_BACKEND_KEYS = frozenset({"kind", "base_url", "api_key_env", "model", "timeout"})
_BACKEND_KINDS = {
    "moderation": ("openai",),
    "search": ("searxng", "brave", "tavily"),
    "ocr": ("mistral",),
}


def _backend(
    section: str, raw: Mapping[str, Any] | None, environ: Mapping[str, str]
) -> BackendConfig | None:
    """A plugin's service from its section (`[moderation]`, `[search]`, `[ocr]`); the API key
    from the environment variable `api_key_env` names."""
    if raw is None:
        return None
    unknown = set(raw) - _BACKEND_KEYS
    if unknown:
        raise ValueError(f"[{section}]: unknown settings {', '.join(sorted(unknown))}")
    kinds = _BACKEND_KINDS[section]
    kind = raw.get("kind", kinds[0])
    if kind not in kinds or "base_url" not in raw:
        raise ValueError(f"[{section}]: base_url is required and kind is one of {', '.join(kinds)}")
    key_env = raw.get("api_key_env")
    if key_env is not None and key_env not in environ:
        raise ValueError(f"[{section}]: the environment variable {key_env} is not set")
    return BackendConfig(
        kind=kind,
        base_url=str(raw["base_url"]),
        api_key=environ[key_env] if key_env else None,
        model=raw.get("model"),
        timeout=float(raw.get("timeout", 10.0)),
    )


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(value)
    return value.lower() in ("true", "1", "yes")


def _names(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


_PARSERS: dict[str, Any] = {"int": int, "float": float, "bool": _bool, "tuple[str,": _names}


def _coerce(annotation: str, value: Any, key: str, source: str) -> Any:
    """Strings from the environment into the setting's type (`int | None` -> int)."""
    parser = _PARSERS.get(annotation.split(" ")[0])
    if parser is None or not isinstance(value, str):
        return value
    try:
        return parser(value)
    except ValueError:
        raise ValueError(f"setting {key!r} in {source}: {value!r} is not {annotation}") from None
