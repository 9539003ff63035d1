"""Streaming at scale (issue 14): tokenwire's cost per streamed chunk, and many streams at once.

Starts the fast fake upstream of `upstream.py`, the paced one of `paced.py`
(`--interval` 20 ms between frames, `--delay` 20 ms before a whole answer),
the bare grpc.aio floor of `roundtrip_floor.py`, and `tokenwire serve` with
`--workers 1` and with `--workers 2` (model `fake-echo` on the fast upstream,
`fake-paced` on the paced one, whose pool allows 4,096 connections). Then,
from a separate load process, rounds interleaved, medians reported:

- per chunk: tokenwire's CPU for streams of 200 content chunks less that for
  streams of 20, over 180 (REST/SSE and gRPC, 8 at a time); the floor is the
  same for a bare grpc.aio server streaming fixed messages, and the relay floor
  for one writing a fixed message per event of the fast upstream's stream as
  it reads them (its writes wait on the upstream, as tokenwire's do);
- streamed and non-streamed requests/s at c=16 through tokenwire (REST, one
  worker), as a ratio of the same calls straight to the fast upstream, and
  REST's added p99 at c=1;
- paced streams: N streams at once (64 frames 20 ms apart, back to back for
  the run's length, the first of each connection a warm-up) through
  tokenwire `--workers 2` and straight to the upstream: time to the first
  frame, frame delay (from the upstream's send to the client's read, clocks
  shared), frames later than 100 ms, and tokenwire's peak memory during the
  run (RSS summed over its processes, and PSS, which counts pages they share
  once).
  The load client is one Python process: at 2,048 streams it is itself busy
  (see the direct row);
- sustained: whole answers from the 20 ms upstream at c=64/256/1,024 through
  tokenwire `--workers 1` and `2` and straight: requests/s (and its ratio to
  direct), p99, timeouts (no answer within 10 s).

    .venv/bin/python bench/streams.py [--quick] [--tokenwire "CMD"] [--only per-chunk ...]
        [--compare "CMD"]

`--compare` starts a second one-worker tokenwire (another tree, say) and adds its rows to
the per-chunk table, measured in the same rounds: a change's before and after in one run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc_h2load
import paced
import roundtrip_load as load
import stream_load
from paced import percentile
from roundtrip_procs import Servers
from stream_load import LONG, SHORT
from upstream import markdown, serving_pids

PORT = r"127\.0\.0\.1:(\d+)"
CONFIG = """\
provider = "none"
data_dir = "{data_dir}"

[providers.fast]
base_url = "http://127.0.0.1:{fast}/v1"

[providers.paced]
base_url = "http://127.0.0.1:{paced}/v1"
pool_size = 4096

[[models]]
id = "fake-echo"
provider = "fast"

[[models]]
id = "fake-paced"
provider = "paced"
"""
T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    rounds: int
    chunk_streams: int  # streams per per-chunk measurement
    ratio_requests: int  # requests per c=16 measurement
    paced: tuple[int, ...]  # concurrent streams
    paced_seconds: float
    sustained: tuple[int, ...]  # concurrencies
    sustained_seconds: float


def make_plan(quick: bool) -> Plan:
    if quick:
        return Plan(1, 80, 1000, (512, 2048), 5.0, (64, 256, 1024), 4.0)
    return Plan(3, 300, 4000, (512, 2048), 8.0, (64, 256, 1024), 8.0)


@dataclass(frozen=True)
class Processes:
    fast: int  # ports
    paced: int
    floor: int
    floor_pid: int
    relay: int  # the relay floor's port
    relay_pid: int
    rest: dict[int, int]  # by worker count
    grpc: int  # of the one-worker tokenwire
    serving: dict[int, tuple[int, ...]]  # PIDs doing tokenwire's work, by worker count
    tree: dict[int, tuple[int, ...]]  # every tokenwire PID (the supervisor too)
    compared: tuple[int, int, int] | None  # `--compare`'s REST and gRPC ports and its PID


def start(
    servers: Servers, tokenwire: Sequence[str], tmp: Path, compare: Sequence[str] = ()
) -> Processes:
    here = Path(__file__).parent
    _, m = servers.start(
        "fast upstream",
        [sys.executable, str(here / "upstream.py"), "--serve-upstream"],
        rf"HTTP on {PORT}",
    )
    fast = int(m.group(1))
    _, m = servers.start(
        "paced upstream", [sys.executable, str(here / "paced.py"), "--serve"], PORT
    )
    paced_port = int(m.group(1))
    floor, m = servers.start(
        "gRPC floor", [sys.executable, str(here / "roundtrip_floor.py"), "grpc"], PORT
    )
    floor_port = int(m.group(1))
    upstream = f"http://127.0.0.1:{fast}/v1/chat/completions"
    argv = [sys.executable, str(here / "roundtrip_floor.py"), "grpc", "--upstream", upstream]
    relay, m = servers.start("gRPC relay floor", argv, PORT)
    relay_port = int(m.group(1))
    config = tmp / "tokenwire.toml"
    config.write_text(CONFIG.format(data_dir=tmp, fast=fast, paced=paced_port))
    rest, serving, tree, grpc = {}, {}, {}, 0
    for workers in (1, 2):
        argv = [*tokenwire, "serve", "--config", str(config), "--http-port", "0"]
        argv += ["--grpc-port", "0", "--workers", str(workers), "--log-level", "warning"]
        serve, m = servers.start(
            f"tokenwire --workers {workers}", argv, rf"gRPC on {PORT}, HTTP on http://{PORT}/v1"
        )
        grpc = grpc or int(m.group(1))
        rest[workers] = int(m.group(2))
        serving[workers] = serving_pids(serve.pid, workers)
        tree[workers] = tuple(sorted({serve.pid, *serving[workers]}))
    compared = None
    if compare:
        argv = [*compare, "serve", "--config", str(config), "--http-port", "0"]
        argv += ["--grpc-port", "0", "--log-level", "warning"]
        other, m = servers.start("compared", argv, rf"gRPC on {PORT}, HTTP on http://{PORT}/v1")
        compared = (int(m.group(2)), int(m.group(1)), other.pid)
    return Processes(
        fast, paced_port, floor_port, floor.pid, relay_port, relay.pid, rest, grpc, serving,
        tree, compared,
    )  # fmt: skip


def run(pool: Executor, servers: Servers, fn: Callable[..., T], *args: Any) -> T:
    result: T = pool.submit(fn, *args).result(timeout=600)
    servers.check()
    return result


# --- per chunk ----------------------------------------------------------------------------


def per_chunk(
    pool: Executor, servers: Servers, p: Processes, plan: Plan, r: int
) -> dict[str, float]:
    """CPU µs per chunk of each path, this round (odd rounds take the paths in reverse, so
    that none always runs in the same place)."""
    paths = {
        "REST/SSE → tokenwire": ("rest", p.rest[1], p.serving[1]),
        "gRPC → tokenwire": ("grpc", p.grpc, p.serving[1]),
        "floor: bare grpc.aio, fixed chunks": ("grpc", p.floor, (p.floor_pid,)),
        "relay floor: bare grpc.aio, a fixed chunk per upstream event": (
            "grpc", p.relay, (p.relay_pid,),
        ),
    }  # fmt: skip
    if grpc_h2load.available():  # a client in C: see grpc_h2load.stream_cpu
        paths["gRPC → tokenwire, h2load client"] = ("grpc-h2load", p.grpc, p.serving[1])
        paths["floor, h2load client"] = ("grpc-h2load", p.floor, (p.floor_pid,))
        paths["relay floor, h2load client"] = ("grpc-h2load", p.relay, (p.relay_pid,))
    if p.compared is not None:
        rest, grpc, pid = p.compared
        paths["REST/SSE → compared"] = ("rest", rest, (pid,))
        paths["gRPC → compared"] = ("grpc", grpc, (pid,))
    order = list(paths.items())
    if r % 2:
        order.reverse()
    out = {}
    for name, (kind, port, pids) in order:
        cpu = {
            k: run(
                pool, servers, stream_load.cpu_per_stream, kind, port, k, plan.chunk_streams, pids
            )
            for k in (SHORT, LONG)
        }
        out[name] = (cpu[LONG] - cpu[SHORT]) / (LONG - SHORT)
    return {name: out[name] for name in paths}  # the table's order


# --- throughput ratios at c=16 ------------------------------------------------------------


def ratios(pool: Executor, servers: Servers, p: Processes, plan: Plan, r: int) -> dict[str, float]:
    def job(kind: load.Kind, port: int, c: int, n: int) -> load.Outcome:
        return run(pool, servers, load.run, load.Job(kind, port, c, n, n // 10, 20.0))

    out = {}
    for kind, name in (("rest-sse", "streamed"), ("rest", "non-streamed")):
        direct = job(kind, p.fast, 16, plan.ratio_requests)  # type: ignore[arg-type]
        through = job(kind, p.rest[1], 16, plan.ratio_requests)  # type: ignore[arg-type]
        out[f"{name} req/s, direct"] = direct.completed / direct.elapsed
        out[f"{name} req/s, tokenwire"] = through.completed / through.elapsed
        out[f"{name} ratio"] = out[f"{name} req/s, tokenwire"] / out[f"{name} req/s, direct"]
    direct, through = (
        job("rest", p.fast, 1, plan.ratio_requests // 2),
        job("rest", p.rest[1], 1, plan.ratio_requests // 2),
    )
    p99 = percentile([n / 1e6 for n in through.total_ns], 99)
    out["REST added p99 ms, c=1"] = p99 - percentile([n / 1e6 for n in direct.total_ns], 99)
    return out


# --- paced streams and sustained load -----------------------------------------------------


def paced_rows(
    pool: Executor, servers: Servers, p: Processes, plan: Plan, r: int
) -> dict[str, float]:
    out = {}
    for n in plan.paced:
        for name, port in (("direct", p.paced), ("tokenwire", p.rest[2])):
            with MemoryPeak(p.tree[2] if name == "tokenwire" else ()) as memory:
                got = run(pool, servers, paced.paced_streams, port, n, plan.paced_seconds, 64)
            key = f"{n} {name}"
            out[f"{key} first p50"] = percentile(got.first_ms, 50)
            out[f"{key} first p99"] = percentile(got.first_ms, 99)
            out[f"{key} frame p50"] = percentile(got.frame_ms, 50)
            out[f"{key} frame p99"] = percentile(got.frame_ms, 99)
            out[f"{key} stalled"] = sum(ms > 100 for ms in got.frame_ms)
            out[f"{key} frames"] = len(got.frame_ms)
            out[f"{key} errors"] = len(got.errors)
            if name == "tokenwire":
                out[f"{n} rss"], out[f"{n} pss"] = memory.rss_mib, memory.pss_mib
    return out


def sustained_rows(
    pool: Executor, servers: Servers, p: Processes, plan: Plan, r: int
) -> dict[str, float]:
    out = {}
    for c in plan.sustained:
        for name, port in (("direct", p.paced), ("1 worker", p.rest[1]), ("2 workers", p.rest[2])):
            got = run(pool, servers, paced.sustained, port, c, plan.sustained_seconds, 10.0)
            out[f"{c} {name} rps"] = len(got.total_ms) / got.elapsed
            out[f"{c} {name} p99"] = percentile(got.total_ms, 99)
            out[f"{c} {name} timeouts"] = got.timeouts + len(got.errors)
    return out


class MemoryPeak:
    """The highest sums of the processes' RSS and PSS seen while in use, sampled every 0.2 s.

    Sampled during the scenario, not read from the kernel's high-water mark (VmHWM), which
    keeps the peak of the process's whole life: every earlier scenario on the same server.
    PSS (proportional set size) counts a page the processes share once across them, where
    summed RSS counts it in each: the memory the tree really uses."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._pids = tuple(pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.rss_mib = 0.0
        self.pss_mib = 0.0

    def __enter__(self) -> MemoryPeak:
        if self._pids:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._pids:
            self._thread.join()

    def _sample(self) -> None:
        while True:
            now = [memory_mib(pid) for pid in self._pids]
            self.rss_mib = max(self.rss_mib, sum(rss for rss, _ in now))
            self.pss_mib = max(self.pss_mib, sum(pss for _, pss in now))
            if self._stop.wait(0.2):  # a sampling period, not a synchronisation
                return


def memory_mib(pid: int) -> tuple[float, float]:
    """A process's RSS and PSS now, in MiB (zeros once it has ended)."""
    kib = {"Rss:": 0, "Pss:": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, *value = line.split()
            if name in kib:
                kib[name] = int(value[0])
    except OSError:  # the process has ended
        pass
    return kib["Rss:"] / 1024, kib["Pss:"] / 1024


# --- report -------------------------------------------------------------------------------

Rounds = list[dict[str, float]]


def med(rounds: Rounds, key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def report(plan: Plan, chunks: Rounds, ratio: Rounds, pace: Rounds, load_: Rounds) -> str:
    """The tables of the scenarios that ran (one that did not has no rounds)."""
    parts = []
    if chunks:
        rows = [[name, f"{med(chunks, name):.1f}"] for name in chunks[0]]
        parts.append("## CPU per streamed chunk (200-chunk streams less 20-chunk ones)\n\n"
                     + markdown(["path", "µs per chunk"], rows))  # fmt: skip
    if ratio:
        rows = [[k, f"{med(ratio, k):,.2f}"] for k in ratio[0]]
        parts.append("## Through tokenwire vs straight to the fast upstream, REST, one worker\n\n"
                     + markdown(["measure", "value"], rows))  # fmt: skip
    if pace:
        parts.append(_paced_table(plan, pace))
    if load_:
        parts.append(_sustained_table(plan, load_))
    return "\n\n".join(parts)


def _paced_table(plan: Plan, pace: Rounds) -> str:
    rows = []
    for n in plan.paced:
        for name in ("direct", "tokenwire"):
            k = f"{n} {name}"
            rows.append([
                str(n), name, *(f"{med(pace, f'{k} {m}'):.1f}" for m in
                ("first p50", "first p99", "frame p50", "frame p99")),
                f"{med(pace, f'{k} stalled'):.0f} / {med(pace, f'{k} frames'):.0f}",
                f"{med(pace, f'{k} errors'):.0f}",
                f"{med(pace, f'{n} rss'):.0f}" if name == "tokenwire" else "—",
                f"{med(pace, f'{n} pss'):.0f}" if name == "tokenwire" else "—",
            ])  # fmt: skip
    headers = ["streams", "path", "first frame p50 ms", "p99 ms", "frame delay p50 ms",
               "p99 ms", "frames > 100 ms", "errors", "peak RSS summed MiB",
               "peak PSS MiB"]  # fmt: skip
    return ("## Paced streams (64 frames, 20 ms apart), tokenwire --workers 2\n\n"
            + markdown(headers, rows))  # fmt: skip


def _sustained_table(plan: Plan, load_: Rounds) -> str:
    rows = []
    for c in plan.sustained:
        direct = med(load_, f"{c} direct rps")
        for name in ("direct", "1 worker", "2 workers"):
            rps = med(load_, f"{c} {name} rps")
            rows.append([str(c), name, f"{rps:,.0f}", f"{rps / direct:.2f}",
                         f"{med(load_, f'{c} {name} p99'):.1f}",
                         f"{med(load_, f'{c} {name} timeouts'):.0f}"])  # fmt: skip
    headers = ["c", "path", "req/s", "ratio to direct", "p99 ms", "timeouts"]
    return "## Sustained load, 20 ms upstream, whole answers\n\n" + markdown(headers, rows)


STEPS = {  # in the report's order
    "per-chunk": per_chunk,
    "ratios": ratios,
    "paced": paced_rows,
    "sustained": sustained_rows,
}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="shorter runs, one round: a smoke run")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3; --quick 1)")
    p.add_argument("--tokenwire", default=str(Path(sys.executable).parent / "tokenwire"))
    p.add_argument("--only", action="append", choices=list(STEPS), help="run just these scenarios")
    p.add_argument("--compare", default="", help="a second tokenwire for the per-chunk table")
    args = p.parse_args(argv)
    steps = {name: step for name, step in STEPS.items() if name in (args.only or STEPS)}
    plan = make_plan(args.quick)
    if args.rounds:
        plan = Plan(args.rounds, *list(plan.__dict__.values())[1:])
    started = time.monotonic()
    results: dict[str, Rounds] = {name: [] for name in STEPS}
    context = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory() as tmp,
        Servers() as servers,
        ProcessPoolExecutor(1, mp_context=context) as pool,
    ):
        procs = start(servers, shlex.split(args.tokenwire), Path(tmp), shlex.split(args.compare))
        for r in range(plan.rounds):
            for name, step in steps.items():
                into = results[name]
                into.append(step(pool, servers, procs, plan, r))
                print(f"[round {r + 1}/{plan.rounds}] {name}: {into[-1]}", file=sys.stderr)
    print(report(plan, *results.values()))
    print(f"\n(took {time.monotonic() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
