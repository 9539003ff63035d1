"""The `tokenwire` command.

serve     the gRPC server and the REST gateway
gateway   only the REST gateway, against a remote gRPC server
keys      create, list, revoke and rotate API keys
usage     usage totals as a terminal table, or CSV
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from server.keys import cli as keys_cli
from server.observability import logs
from server.runtime import workers
from server.runtime.announce import announce_ports
from server.runtime.config import Config, load
from server.usage import cli as usage_cli

if TYPE_CHECKING:
    from server.runtime import app

EPILOG = """\
Every option can also come from the environment as TOKENWIRE_<OPTION> (for example
TOKENWIRE_MODEL_PATH=/models/x.gguf) or from a TOML file given with --config
(or TOKENWIRE_CONFIG) using the option names with underscores. Flags win over the
environment, which wins over the file.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenwire", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the gRPC server and the REST gateway",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(serve)
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default 50051; 0 picks one)")
    serve.add_argument(
        "--provider",
        choices=["local", "fake", "none"],
        help="embedded provider (default local: llama.cpp; none: only configured upstreams)",
    )
    serve.add_argument(
        "--model-path", help="serve this one GGUF file (default: the bundled SmolLM2, Gemma 3)"
    )
    serve.add_argument(
        "--max-resident-models", type=int, help="local models kept in memory at once (default 1)"
    )
    serve.add_argument("--n-ctx", type=int, help="local model context in tokens (default 4096)")
    serve.add_argument("--n-threads", type=int, help="llama.cpp threads (default: one per core)")
    serve.add_argument("--default-model", help="model for requests that name none")
    serve.add_argument("--grace", type=float, help="seconds to drain on SIGTERM (default 10)")
    serve.add_argument(
        "--workers", type=int, help="processes sharing the ports, one per core (default 1)"
    )
    gw = sub.add_parser(
        "gateway",
        help="run only the REST gateway against a gRPC server",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(gw)
    gw.add_argument("--grpc-target", help="gRPC server, host:port or dns:///name:port")
    serve.add_argument("--admin-token", help="token for the admin API (16+ characters)")
    _switch(serve, "--allow-open", "serve a non-loopback address without API keys")
    serve.add_argument("--redis-url", help="Redis for rate limits shared across replicas")
    # Only the server traces: the standalone gateway passes `traceparent` on as gRPC metadata.
    serve.add_argument("--otlp-endpoint", help="send traces to this OTLP/HTTP URL (…/v1/traces)")
    _switch(serve, "--otlp-capture-content", "put prompt and completion text on spans (bounded)")
    serve.add_argument("--retries", type=int, help="retries of an upstream before the next one")
    serve.add_argument(
        "--memory-budget-tokens",
        type=int,
        help="tokens recalled memories may add (default 512; 0: recall off)",
    )
    storage = argparse.ArgumentParser(add_help=False)
    _storage(storage)
    keys = sub.add_parser(
        "keys",
        help="manage API keys",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    keys_cli.configure(keys, parents=[storage])  # the storage options follow each subcommand
    usage = sub.add_parser(
        "usage",
        help="usage totals as a table, or CSV",
        epilog=EPILOG,
        parents=[storage],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    usage_cli.configure(usage)
    return p


def _switch(p: argparse.ArgumentParser, flag: str, help: str, dest: str | None = None) -> None:
    """A flag without a value: sets its setting (True; False for `--no-…`), else leaves it
    unset so the environment or the config file decides."""
    value = not flag.startswith("--no-")
    p.add_argument(flag, dest=dest, action="store_const", const=value, help=help)


def _storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--database-url", help="postgresql://… or sqlite:///…")
    p.add_argument("--data-dir", help="directory of the embedded SQLite database")


def _common(p: argparse.ArgumentParser) -> None:
    _storage(p)
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, help="HTTP port (default 8080; 0 picks one)")
    p.add_argument("--keepalive-interval", type=float, help="SSE keepalive seconds (default 15)")
    p.add_argument("--max-body-bytes", type=int, help="largest request body (default 8 MiB)")
    p.add_argument(
        "--head-timeout", type=float, help="seconds to send a request's headers (default 10)"
    )
    p.add_argument("--log-level", help="debug, info, warning, error (default info)")
    p.add_argument("--log-format", choices=["text", "json"], help="log lines (default text)")
    _switch(p, "--access-log", "one INFO line per chat request (logger tokenwire.access)")
    _switch(p, "--no-metrics", "record no metrics and serve no /metrics", dest="metrics")


# Under load, requests in flight keep hundreds of young objects alive that reference counting
# frees soon after; the default trigger (700 more allocations than frees) ran a young
# collection every few requests, ~9% of a request's CPU (REST c=16, 1,130 -> 1,020 µs).
GC_THRESHOLDS = (20_000, 50, 100)


async def _run(config: Config, starter: Callable[[Config], Awaitable[app.Service]]) -> None:
    service = await starter(config)
    # Everything built so far lives as long as the process: keep it out of the cyclic GC's
    # collections, which otherwise walk it all and stall requests under load.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    if not workers.notify_ready():
        announce_ports(config.host, service.grpc_port, service.http_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait(
        {waiter, asyncio.ensure_future(service.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    await service.stop()


async def _offline(args: argparse.Namespace) -> int:
    """`keys` and `usage`: straight against the database, no server needed."""
    from server.runtime import app

    config = load({k: getattr(args, k) for k in ("config", "database_url", "data_dir")})
    db = await app.open_storage(config)
    try:
        if args.command == "keys":
            return await keys_cli.run(args, db)
        return await usage_cli.run(args, db)
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    workers.follow_supervisor()
    namespace = parser().parse_args(argv)
    if namespace.command in ("keys", "usage"):
        import uvloop

        raise SystemExit(uvloop.run(_offline(namespace)))
    args = vars(namespace)
    command = args.pop("command")
    try:
        config = load(args)
    except ValueError as e:  # a bad option or config file: its message says what, no traceback
        raise SystemExit(f"tokenwire: {e}") from None
    try:
        logs.configure(config.log_level, config.log_format)
    except ValueError as e:
        raise SystemExit(f"tokenwire: {e}") from None
    if command == "serve" and config.workers > 1:
        raise SystemExit(workers.supervise(config, argv))
    _serve(config, command)


def _serve(config: Config, command: str) -> None:
    """Serve in this process. What serving needs is imported here, not at the top: the
    `--workers` supervisor never serves, and those ~90 MiB would stay in it for nothing."""
    import uvloop

    from server.runtime import app
    from server.runtime.compose import StartupRefused

    starter = app.start if command == "serve" else app.start_gateway
    try:
        # uvloop: the event loop's own per-request overhead is a fraction of asyncio's
        uvloop.run(_run(config, starter))
    except StartupRefused as e:
        raise SystemExit(f"tokenwire: {e}") from None
