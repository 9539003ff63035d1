"""Round trip through tokenwire with the fake provider answering at once.

Starts, as separate processes, `tokenwire serve --provider fake` (gRPC server
with the gateway in-process), a standalone `tokenwire gateway` in front of its
gRPC port, and three floors (bare uvicorn on uvloop, bare uvicorn on the stock
asyncio loop, bare grpc.aio; see `roundtrip_floor.py`). Then, from a separate
load process (`roundtrip_load.py`), it measures for each path:

- latency p50/p99 at concurrency 1 (default 2,000 requests after 200 warm-up);
- requests/s and p50/p99 at concurrency 16 and 64 (5,000 requests each);
- time to the first SSE `data:` event (REST, `"stream": true`) or first message
  (gRPC `StreamChatCompletion`), p50/p99 at concurrency 1;
- server and client CPU per request at concurrency 16.

Measurements are interleaved over `--rounds` rounds (3 by default) and every
number printed is the median over the rounds, so one noisy moment on the shared
2-core machine moves one round, not the table. If `wrk` is installed the REST
paths are also measured by wrk at 16 and 64 connections, as a cross-check.

    .venv/bin/python bench/roundtrip.py            # full run, about 4 minutes
    .venv/bin/python bench/roundtrip.py --quick    # smoke run, about 1 minute

A path that stalls (say 40 ms per request) is cut at `--time-limit` seconds
per measurement, which stretches a full run to about 10 minutes; the notes
under the tables say which measurements were cut. `--tokenwire CMD` runs
another tokenwire command (another checkout, a patched launcher) instead of
the one beside this Python.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc
import roundtrip_load as load
import roundtrip_wrk as wrk
import uvicorn
from roundtrip_procs import Servers

Measure = Literal["c1", "c16", "c64", "stream"]
MEASURES: tuple[Measure, ...] = ("c1", "c16", "c64", "stream")
CONCURRENCY: dict[Measure, int] = {"c1": 1, "c16": 16, "c64": 64, "stream": 1}
STREAMING: dict[str, load.Kind] = {"rest": "rest-sse", "grpc": "grpc-stream"}
HERE = Path(__file__).resolve().parent
FLOORS: tuple[tuple[str, Literal["rest", "grpc"], list[str]], ...] = (
    ("floor: bare uvicorn, uvloop", "rest", ["http", "--loop", "uvloop"]),
    ("floor: bare uvicorn, asyncio loop", "rest", ["http", "--loop", "asyncio"]),
    ("floor: bare grpc.aio", "grpc", ["grpc"]),
)
PORT = r"127\.0\.0\.1:(\d+)"


@dataclass(frozen=True)
class Target:
    name: str
    kind: Literal["rest", "grpc"]
    port: int
    watch: tuple[int, ...]  # server-side PIDs: their CPU counts as the path's cost


@dataclass(frozen=True)
class Plan:
    requests: int  # per measurement at c=1 (streams: half)
    warmup: int
    loaded: int  # per measurement at c=16 and c=64
    rounds: int
    time_limit: float  # seconds, for any one measured phase
    wrk_seconds: float

    def count(self, measure: Measure) -> int:
        return {"c1": self.requests, "stream": self.requests // 2}.get(measure, self.loaded)

    def warmup_for(self, measure: Measure) -> int:
        return max(self.warmup, self.count(measure) // 10)

    def job(self, target: Target, measure: Measure) -> load.Job:
        kind = STREAMING[target.kind] if measure == "stream" else target.kind
        return load.Job(
            kind, target.port, CONCURRENCY[measure], self.count(measure),
            self.warmup_for(measure), self.time_limit, target.watch,
        )  # fmt: skip


Results = dict[tuple[str, Measure], list[load.Outcome]]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer requests, one round: a smoke run")
    p.add_argument("--requests", type=int, help="requests per c=1 measurement (default 2000)")
    p.add_argument("--rounds", type=int, help="interleaved rounds, medians reported (default 3)")
    p.add_argument("--no-wrk", action="store_true", help="skip the wrk cross-check")
    p.add_argument("--time-limit", type=float, default=20.0, help="seconds per measurement, max")
    p.add_argument(
        "--tokenwire",
        default=str(Path(sys.executable).parent / "tokenwire"),
        help="the command that runs tokenwire (default: the one beside this Python)",
    )
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    requests = args.requests or (300 if args.quick else 2000)
    rounds = args.rounds or (1 if args.quick else 3)
    return Plan(
        requests=requests,
        warmup=50 if args.quick else 200,
        loaded=max(requests * 5 // 2, 64),
        rounds=rounds,
        time_limit=args.time_limit,
        wrk_seconds=2.0 if args.quick else 5.0,
    )


# --- servers -----------------------------------------------------------------------------


def start_servers(servers: Servers, tokenwire: Sequence[str]) -> list[Target]:
    serve, grpc_port, http_port = start_tokenwire(servers, tokenwire)
    gateway, gateway_port = start_gateway(servers, tokenwire, grpc_port)
    return [
        Target("REST → tokenwire (in-process gateway)", "rest", http_port, (serve,)),
        Target(
            "REST → tokenwire gateway → gRPC → tokenwire",
            "rest",
            gateway_port,
            (gateway, serve),
        ),
        Target("gRPC → tokenwire", "grpc", grpc_port, (serve,)),
        *start_floors(servers),
    ]


def start_tokenwire(servers: Servers, tokenwire: Sequence[str]) -> tuple[int, int, int]:
    """`tokenwire serve` with the fake provider: its PID, gRPC port and HTTP port."""
    argv = [*tokenwire, "serve", "--provider", "fake", "--http-port", "0", "--grpc-port", "0"]
    server, m = servers.start(
        "tokenwire serve",
        [*argv, "--log-level", "warning"],
        rf"gRPC on {PORT}, HTTP on http://{PORT}/v1",
    )
    return server.pid, int(m.group(1)), int(m.group(2))


def start_gateway(servers: Servers, tokenwire: Sequence[str], grpc_port: int) -> tuple[int, int]:
    """A standalone `tokenwire gateway` calling `grpc_port`: its PID and HTTP port."""
    argv = [*tokenwire, "gateway", "--grpc-target", f"127.0.0.1:{grpc_port}", "--http-port", "0"]
    server, m = servers.start(
        "tokenwire gateway", [*argv, "--log-level", "warning"], rf"HTTP on http://{PORT}/v1"
    )
    return server.pid, int(m.group(1))


def start_floors(servers: Servers) -> list[Target]:
    floor = [sys.executable, str(HERE / "roundtrip_floor.py")]
    found = []
    for name, kind, args in FLOORS:
        server, m = servers.start(name, [*floor, *args], PORT)
        found.append(Target(name, kind, int(m.group(1)), (server.pid,)))
    return found


# --- measuring ---------------------------------------------------------------------------


def measure_all(pool: Executor, servers: Servers, targets: Sequence[Target], plan: Plan) -> Results:
    results: Results = {}
    for r in range(plan.rounds):
        for target in targets if r % 2 == 0 else targets[::-1]:  # ABBA, as in upstream.py
            for measure in MEASURES:
                job = plan.job(target, measure)
                outcome = pool.submit(load.run, job).result(timeout=4 * plan.time_limit + 60)
                servers.check()
                results.setdefault((target.name, measure), []).append(outcome)
                progress(r, plan.rounds, target, measure, outcome)
    return results


def progress(r: int, rounds: int, target: Target, measure: Measure, o: load.Outcome) -> None:
    p50 = percentile(o.first_ns if measure == "stream" else o.total_ns, 50)
    print(
        f"[round {r + 1}/{rounds}] {target.name:46} {measure:6} n={o.completed:5} "
        f"{rps(o):8.0f} req/s  p50 {p50:.3f} ms"
        + (f"  errors={len(o.errors)}" if o.errors else ""),
        file=sys.stderr,
        flush=True,
    )


def run_wrk(targets: Sequence[Target], plan: Plan) -> dict[tuple[str, int], wrk.WrkResult]:
    out: dict[tuple[str, int], wrk.WrkResult] = {}
    for target in (t for t in targets if t.kind == "rest"):
        for c in (16, 64):
            out[target.name, c] = wrk.run(target.port, load.PATH, load.BODY, c, plan.wrk_seconds)
            print(f"[wrk] {target.name:46} c={c:<3} {out[target.name, c].rps:8.0f} req/s",
                  file=sys.stderr, flush=True)  # fmt: skip
    return out


# --- statistics --------------------------------------------------------------------------


def percentile(ns: Sequence[int], p: float) -> float:
    """Nearest-rank percentile of nanosecond samples, in milliseconds."""
    if not ns:
        return float("nan")
    ordered = sorted(ns)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1] / 1e6


def rps(o: load.Outcome) -> float:
    return o.completed / o.elapsed if o.elapsed else float("nan")


def median(outcomes: Iterable[load.Outcome], stat: Callable[[load.Outcome], float]) -> float:
    return statistics.median(stat(o) for o in outcomes)


def stat_ms(outcomes: Iterable[load.Outcome], samples: str, q: float) -> float:
    """The median over rounds of one percentile of `first_ns` or `total_ns`."""
    return median(outcomes, lambda o: percentile(getattr(o, samples), q))


def cpu_us(o: load.Outcome) -> tuple[float, ...]:
    return tuple(s / max(o.completed, 1) * 1e6 for s in o.server_cpu)


# --- tables ------------------------------------------------------------------------------


def markdown(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ms(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def latency_table(targets: Sequence[Target], results: Results) -> str:
    rows = []
    for t in targets:
        row = [t.name]
        for m in MEASURES[:3]:
            got = results[t.name, m]
            if m != "c1":
                row.append(f"{median(got, rps):,.0f}")
            row += [ms(stat_ms(got, "total_ns", q)) for q in (50, 99)]
        rows.append(row)
    headers = ["path", "p50 ms c=1", "p99 ms c=1", "req/s c=16", "p50 ms c=16", "p99 ms c=16",
               "req/s c=64", "p50 ms c=64", "p99 ms c=64"]  # fmt: skip
    return markdown(headers, rows)


def ttfb_table(targets: Sequence[Target], results: Results) -> str:
    rows = []
    for t in targets:
        got = results[t.name, "stream"]
        first = [ms(stat_ms(got, "first_ns", q)) for q in (50, 99)]
        whole = ms(stat_ms(got, "total_ns", 50))
        what = "first SSE data: event" if t.kind == "rest" else "first message"
        rows.append([t.name, what, *first, whole])
    return markdown(["path", "first", "p50 ms", "p99 ms", "whole stream p50 ms"], rows)


def cpu_table(targets: Sequence[Target], results: Results) -> str:
    rows = []
    for t in targets:
        got = results[t.name, "c16"]
        parts = [statistics.median(cpu_us(o)[i] for o in got) for i in range(len(t.watch))]
        server = f"{sum(parts):,.0f}"
        if len(parts) > 1:
            server += " (" + " gateway + ".join(f"{p:,.0f}" for p in parts) + " server)"
        client = median(got, lambda o: o.client_cpu / max(o.completed, 1) * 1e6)
        busy = median(got, lambda o: o.client_cpu / o.elapsed * 100)
        rows.append([t.name, server, f"{client:,.0f}", f"{busy:.0f} %"])
    headers = ["path", "server CPU µs/req", "client CPU µs/req", "client busy (of one core)"]
    return markdown(headers, rows)


def wrk_table(targets: Sequence[Target], found: dict[tuple[str, int], wrk.WrkResult]) -> str:
    rows = []
    for t in (t for t in targets if t.kind == "rest"):
        row = [t.name]
        for c in (16, 64):
            w = found[t.name, c]
            row += [f"{w.rps:,.0f}", ms(w.p50_ms), ms(w.p99_ms)]
            row[-1] += f" ({w.bad} bad)" if w.bad else ""
        rows.append(row)
    headers = ["path", "req/s c=16", "p50 ms c=16", "p99 ms c=16",
               "req/s c=64", "p50 ms c=64", "p99 ms c=64"]  # fmt: skip
    return markdown(headers, rows)


def errors_note(results: Results, plan: Plan) -> str:
    notes = []
    for (name, measure), outcomes in results.items():
        errors = sum(len(o.errors) for o in outcomes)
        if errors:
            notes.append(
                f"- {name} {measure}: {errors} failed requests, e.g. {outcomes[0].errors[:1]}"
            )
        short = [o.completed for o in outcomes if o.completed < plan.count(measure)]
        if short:
            notes.append(
                f"- {name} {measure}: stopped by the {plan.time_limit:g} s limit at {short}"
            )
    notes += nagle_note(results)
    return "\n".join(notes)


def nagle_note(results: Results) -> list[str]:
    """Flag REST paths whose c=1 p50 sits at Linux's 40 ms delayed-ACK timer."""
    slow = [
        name
        for (name, measure), got in results.items()
        if measure == "c1" and name.startswith("REST") and 38 < stat_ms(got, "total_ns", 50) < 50
    ]
    if not slow:
        return []
    return [
        f"- {', '.join(slow)}: p50 ≈ 40 ms at c=1 is the signature of Nagle's algorithm "
        "meeting delayed ACKs: the response head and body go out as two writes on a socket "
        "without TCP_NODELAY. The stock asyncio loop sets TCP_NODELAY on accepted sockets "
        "only when the listening socket's proto is IPPROTO_TCP, and socket.create_server() "
        "leaves it 0 (uvloop always sets it). Setting TCP_NODELAY on the listening socket "
        "fixes it (Linux copies it to accepted sockets); the floors do so."
    ]


def header(plan: Plan) -> str:
    load1, load5, _ = os.getloadavg()
    return (
        f"tokenwire round trip, fake provider; {os.cpu_count()} cores, "
        f"load average {load1:.2f}/{load5:.2f}; Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}, uvicorn {uvicorn.__version__}.\n"
        f"c=1: {plan.requests} requests after {plan.warmup} warm-up; c=16 and c=64: "
        f"{plan.loaded} requests after {plan.warmup_for('c16')}; "
        f"streams: {plan.count('stream')} after {plan.warmup_for('stream')}. "
        f"Each number is the median of {plan.rounds} interleaved round(s). "
        "REST: HTTP/1.1 keep-alive, one connection per concurrent client; "
        "gRPC: one channel shared by the concurrent clients."
    )


def report(
    plan: Plan,
    targets: Sequence[Target],
    results: Results,
    found: dict[tuple[str, int], wrk.WrkResult] | None,
) -> str:
    parts = [
        header(plan),
        "## Unary round trip\n\n" + latency_table(targets, results),
        "## Streaming: time to first event, c=1\n\n" + ttfb_table(targets, results),
        "## CPU per request at c=16\n\n" + cpu_table(targets, results),
    ]
    if found is None:
        parts.append("## wrk cross-check\n\nskipped: wrk is not installed (apt-get install -y wrk)")
    elif not found:
        parts.append("## wrk cross-check\n\nskipped (--no-wrk)")
    else:
        parts.append(f"## wrk cross-check (1 thread, {plan.wrk_seconds:g} s)\n\n"
                     + wrk_table(targets, found))  # fmt: skip
    notes = errors_note(results, plan)
    if notes:
        parts.append("## Notes\n\n" + notes)
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    plan = make_plan(args)
    started = time.monotonic()
    context = multiprocessing.get_context("spawn")
    with Servers() as servers, ProcessPoolExecutor(1, mp_context=context) as pool:
        targets = start_servers(servers, shlex.split(args.tokenwire))
        results = measure_all(pool, servers, targets, plan)
        found = None if not wrk.available() else {} if args.no_wrk else run_wrk(targets, plan)
    print(report(plan, targets, results, found))
    print(f"\n(took {time.monotonic() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
