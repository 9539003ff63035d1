"""What metrics and tracing cost on the request path: the same run, each on and off.

Starts `tokenwire serve --provider fake` three times, as separate processes: with metrics
off (`--no-metrics`), with metrics on (the default), and with metrics and tracing on
(`--otlp-endpoint` at a small OTLP/HTTP sink in this process that answers 200 to every
batch); and a standalone `tokenwire gateway` in front of the first, twice: its own HTTP
metrics off and on (the CPU figures then are the gateway's). From a separate load process
(`roundtrip_load.py`) it measures REST: p50/p99 at concurrency 1, and req/s and the
server's CPU per request at concurrency 16 (unary) and at concurrency 1 (SSE stream),
interleaved over `--rounds` rounds (medians reported), so a noisy moment on the shared
machine moves one round, not the table.

    .venv/bin/python bench/observability.py            # from the checkout's root
    .venv/bin/python bench/observability.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import multiprocessing
import shlex
import statistics
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import roundtrip_load as load
from roundtrip import PORT, percentile, rps
from roundtrip_procs import Servers

VARIANTS = ("metrics off", "metrics on", "metrics + tracing on")
# A standalone `tokenwire gateway` in front of the "metrics off" server, its own /metrics off
# and on (its HTTP series): the CPU column is the gateway's.
GATEWAYS = ("gateway alone, metrics off", "gateway alone, metrics on")
MEASURES = (("c1", "rest", 1), ("c16", "rest", 16), ("stream", "rest-sse", 1))


class _Sink(BaseHTTPRequestHandler):
    """Takes an OTLP export and answers 200 with an empty ExportTraceServiceResponse."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def start_sink() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v1/traces"


def start(servers: Servers, tokenwire: str, sink: str) -> dict[str, tuple[int, int]]:
    """Each variant's server PID and HTTP port."""
    base = [
        *shlex.split(tokenwire),
        "serve",
        "--provider",
        "fake",
        "--log-level",
        "warning",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
    ]
    extra = {VARIANTS[0]: ["--no-metrics"], VARIANTS[1]: [], VARIANTS[2]: ["--otlp-endpoint", sink]}
    found = {}
    announced = rf"gRPC on {PORT}, HTTP on http://{PORT}/v1"
    for name in VARIANTS:
        server, m = servers.start(name, [*base, *extra[name]], announced)
        found[name] = (server.pid, int(m.group(2)))
        if name == VARIANTS[0]:
            grpc_port = int(m.group(1))
    gateway = [*shlex.split(tokenwire), "gateway", "--grpc-target", f"127.0.0.1:{grpc_port}"]
    gateway += ["--http-port", "0", "--log-level", "warning"]
    for name, flags in zip(GATEWAYS, (["--no-metrics"], []), strict=True):
        server, m = servers.start(name, [*gateway, *flags], rf"HTTP on http://{PORT}/v1")
        found[name] = (server.pid, int(m.group(1)))
    return found


Results = dict[tuple[str, str], list[load.Outcome]]


def measure(
    pool: Executor,
    servers: Servers,
    targets: dict[str, tuple[int, int]],
    rounds: int,
    requests: int,
) -> Results:
    results: Results = {}
    for r in range(rounds):
        for measure_name, kind, concurrency in MEASURES:
            for name, (pid, port) in targets.items():
                count = requests * (4 if concurrency > 1 else 1)
                job = load.Job(kind, port, concurrency, count, requests // 10, 30.0, (pid,))  # type: ignore[arg-type]
                outcome = pool.submit(load.run, job).result(timeout=200)
                servers.check()
                results.setdefault((name, measure_name), []).append(outcome)
                print(
                    f"[{r + 1}/{rounds}] {name:22} {measure_name:6} {rps(outcome):7.0f} req/s",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report(results: Results) -> str:
    rows = [
        "| variant | p50 c=1 (ms) | p99 c=1 (ms) | req/s c=16 | server CPU/req c=16 (µs) "
        "| stream p50 (ms) | stream CPU/req (µs) |",
        "|---|---|---|---|---|---|---|",
    ]
    base_rps = 0.0
    for name in (*VARIANTS, *GATEWAYS):
        if name in (VARIANTS[0], GATEWAYS[0]):
            base_rps = 0.0  # each group against its own "metrics off"
        c1, c16, st = (results[(name, m[0])] for m in MEASURES)
        p50 = _median([percentile(o.total_ns, 50) for o in c1])
        p99 = _median([percentile(o.total_ns, 99) for o in c1])
        throughput = _median([rps(o) for o in c16])
        cpu = _median([sum(o.server_cpu) / max(o.completed, 1) * 1e6 for o in c16])
        sp50 = _median([percentile(o.total_ns, 50) for o in st])
        scpu = _median([sum(o.server_cpu) / max(o.completed, 1) * 1e6 for o in st])
        base_rps = base_rps or throughput
        first = name in (VARIANTS[0], GATEWAYS[0])
        change = "" if first else f" ({(throughput / base_rps - 1) * 100:+.1f}%)"
        rows.append(
            f"| {name} | {p50:.3f} | {p99:.3f} | {throughput:.0f}{change} | {cpu:.0f} "
            f"| {sp50:.3f} | {scpu:.0f} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--quick", action="store_true", help="fewer requests, one round")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    # `python -m server` from the current directory: the checkout this runs in, whichever
    # one the venv's `tokenwire` command was installed from.
    p.add_argument("--tokenwire", default=f"{sys.executable} -m server")
    args = p.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    requests = 300 if args.quick else 1500
    context = multiprocessing.get_context("spawn")
    with Servers() as servers, ProcessPoolExecutor(1, mp_context=context) as pool:
        targets = start(servers, args.tokenwire, start_sink())
        results = measure(pool, servers, targets, rounds, requests)
    print(report(results))


if __name__ == "__main__":
    main()
