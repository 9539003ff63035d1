"""What routing through tokenwire costs: tokenwire in front of a fast fake OpenAI upstream.

Starts, as separate processes, a fake OpenAI-compatible upstream (a bare uvicorn
ASGI app on uvloop and httptools answering at once: one JSON body, or for
`"stream": true` SSE chunks with a usage chunk and `[DONE]`) and
`tokenwire serve --config <toml naming that upstream> --http-port 0 --grpc-port 0`
with no embedded model. Then, from a separate load process (`roundtrip_load.py`),
it measures three paths to the same answer:

- direct: REST straight to the fake upstream;
- REST → tokenwire → upstream (the gateway in tokenwire's process);
- gRPC → tokenwire → upstream, from a grpc.aio client and, where h2load is
  installed (`apt-get install nghttp2-client`), from h2load: the grpc.aio
  client costs about as much CPU as the server it loads (`grpc_h2load.py`);
- for scale, the same two gRPC loads on a floor: a bare grpc.aio server that
  makes the same upstream call with the same HTTP client and answers a fixed
  message (`roundtrip_floor.py grpc --upstream`), what gRPC costs before any of
  tokenwire's code runs.

For each: latency p50/p99 at concurrency 1, requests/s with p50/p99 at
concurrency 16 and 64, time to the first SSE `data:` event (gRPC: first message)
at concurrency 1, and tokenwire's CPU per request. Rounds are interleaved and
every number is the median over rounds, as in `roundtrip.py`; the load client
and process handling are `roundtrip_load.py` and `roundtrip_procs.py`.
The issues' targets are checked at the end: tokenwire adds under 1 ms at p50
over the direct call at c=1; at c=64 it serves ≥ 2,000 requests/s (issue 12,
with upstream calls on aiohttp), p99 < 50 ms.

    .venv/bin/python bench/upstream.py            # full run, a few minutes
    .venv/bin/python bench/upstream.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing
import os
import platform
import shlex
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import grpc_h2load
import orjson
import roundtrip_load as load
import uvicorn
from roundtrip_procs import Servers

ANNOUNCE = "fake upstream: HTTP on 127.0.0.1:"
MODEL = "fake-echo"  # the id roundtrip_load's requests name
CONFIG = """\
provider = "none"
data_dir = "{data_dir}"  # usage records of the run go here, not to the user's database

[providers.upstream]
base_url = "http://127.0.0.1:{port}/v1"

[[models]]
id = "{model}"
provider = "upstream"
"""
DIRECT = "direct: REST → fake upstream"
REST = "REST → tokenwire → upstream"
GRPC = "gRPC → tokenwire → upstream"
GRPC_H2 = "gRPC (h2load) → tokenwire → upstream"
FLOOR = "floor: bare grpc.aio → upstream"
FLOOR_H2 = "floor (h2load): bare grpc.aio → upstream"
THROUGH = (REST, GRPC, GRPC_H2)  # the paths the targets are for
MIN_RATE = 2000  # requests/s at c=64 on one worker
FLOORS = (FLOOR, FLOOR_H2)
UNARY: tuple[Measure, ...] = ("c1", "c16", "c64")  # h2load and the floor: no streams

# --- the fake upstream (run in its own process with --serve-upstream) ---------------------

_HEAD = b'"id":"up-1","created":1795323978,"model":"' + MODEL.encode() + b'"'
COMPLETION = (
    b'{"object":"chat.completion",' + _HEAD + b',"choices":[{"index":0,"message":'
    b'{"role":"assistant","content":"hello there ","refusal":null},"logprobs":null,'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":2,'
    b'"total_tokens":4}}'
)
_CHUNK = b'data: {"object":"chat.completion.chunk",' + _HEAD + b',"choices":['
EVENTS = (
    _CHUNK + b'{"index":0,"delta":{"role":"assistant","content":"hello "},'
    b'"finish_reason":null}]}\n\n',
    _CHUNK + b'{"index":0,"delta":{"content":"there "},"finish_reason":null}]}\n\n',
    _CHUNK + b'{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
    _CHUNK + b'],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}\n\n',
    b"data: [DONE]\n\n",
)
_TOKEN = _CHUNK + b'{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'


@functools.cache
def stream_events(max_tokens: int) -> tuple[bytes, ...]:
    """The stream's events: `EVENTS`, or when the request asks for more than its two content
    chunks (`max_tokens` > 2), that many content chunks: a long stream, one event per write."""
    if max_tokens <= 2:
        return EVENTS
    return (EVENTS[0], *[_TOKEN] * (max_tokens - 1), *EVENTS[2:])


JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(COMPLETION)).encode()),
]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
Message = MutableMapping[str, Any]


async def upstream_app(scope: Mapping[str, Any], receive: Any, send: Any) -> None:
    """Chat completions answered at once: JSON, or SSE when the body asks to stream."""
    body = b""
    while True:
        message: Message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = orjson.loads(body)
    if not request.get("stream"):
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": COMPLETION})
        return
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    for event in stream_events(request.get("max_tokens") or 0):
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def serve_upstream() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delays
    config = uvicorn.Config(
        upstream_app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    print(f"{ANNOUNCE}{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])


# --- the run ------------------------------------------------------------------------------

Measure = Literal["c1", "c16", "c64", "stream"]
MEASURES: tuple[Measure, ...] = ("c1", "c16", "c64", "stream")
CONCURRENCY: dict[Measure, int] = {"c1": 1, "c16": 16, "c64": 64, "stream": 1}
STREAMING: dict[str, load.Kind] = {"rest": "rest-sse", "grpc": "grpc-stream"}
PORT = r"127\.0\.0\.1:(\d+)"


@dataclass(frozen=True)
class Target:
    name: str
    kind: Literal["rest", "grpc", "grpc-h2load"]
    port: int
    watch: tuple[int, ...]  # PIDs whose CPU is measured: tokenwire (if any), then the upstream
    measures: tuple[Measure, ...] = MEASURES


@dataclass(frozen=True)
class Plan:
    requests: int  # per measurement at c=1 (streams: half)
    warmup: int
    loaded: int  # per measurement at c=16 and c=64
    rounds: int
    time_limit: float  # seconds, for any one measured phase
    workers: int = 1  # tokenwire serve --workers

    def count(self, measure: Measure) -> int:
        return {"c1": self.requests, "stream": self.requests // 2}.get(measure, self.loaded)

    def job(self, target: Target, measure: Measure) -> load.Job:
        kind = STREAMING[target.kind] if measure == "stream" else target.kind
        count, c = self.count(measure), CONCURRENCY[measure]
        warmup = max(self.warmup, count // 10)
        return load.Job(kind, target.port, c, count, warmup, self.time_limit, target.watch)


Results = dict[tuple[str, Measure], list[load.Outcome]]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer requests, one round: a smoke run")
    p.add_argument("--requests", type=int, help="requests per c=1 measurement (default 2000)")
    p.add_argument("--rounds", type=int, help="interleaved rounds, medians reported (default 3)")
    p.add_argument("--time-limit", type=float, default=20.0, help="seconds per measurement, max")
    p.add_argument(
        "--tokenwire",
        default=str(Path(sys.executable).parent / "tokenwire"),
        help="the command that runs tokenwire (default: the one beside this Python)",
    )
    p.add_argument("--workers", type=int, default=1, help="tokenwire serve --workers (default 1)")
    p.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    requests = args.requests or (300 if args.quick else 2000)
    return Plan(
        requests=requests,
        warmup=50 if args.quick else 200,
        loaded=max(requests * 5 // 2, 64),
        rounds=args.rounds or (1 if args.quick else 3),
        time_limit=args.time_limit,
        workers=args.workers,
    )


def start_servers(
    servers: Servers, tokenwire: Sequence[str], tmp: Path, workers: int = 1
) -> list[Target]:
    upstream, m = servers.start(
        "fake upstream", [sys.executable, __file__, "--serve-upstream"], rf"{ANNOUNCE}(\d+)"
    )
    port = int(m.group(1))
    config = tmp / "tokenwire.toml"
    config.write_text(CONFIG.format(port=port, model=MODEL, data_dir=tmp))
    argv = [*tokenwire, "serve", "--config", str(config), "--http-port", "0", "--grpc-port", "0"]
    argv += ["--workers", str(workers)]
    serve, m = servers.start(
        "tokenwire serve",
        [*argv, "--log-level", "warning"],
        rf"gRPC on {PORT}, HTTP on http://{PORT}/v1",
    )
    grpc_port, http_port = int(m.group(1)), int(m.group(2))
    both = (*serving_pids(serve.pid, workers), upstream.pid)
    floor = start_floor(servers, port)
    beside = (floor.pid, upstream.pid)
    targets = [
        Target(DIRECT, "rest", port, (upstream.pid,)),
        Target(REST, "rest", http_port, both),
        Target(GRPC, "grpc", grpc_port, both),
        Target(FLOOR, "grpc", floor.port, beside, UNARY),
    ]
    if grpc_h2load.available():  # h2load times whole calls: no first-message time
        targets.append(Target(GRPC_H2, "grpc-h2load", grpc_port, both, UNARY))
        targets.append(Target(FLOOR_H2, "grpc-h2load", floor.port, beside, UNARY))
    return targets


@dataclass(frozen=True)
class Floor:
    pid: int
    port: int


def start_floor(servers: Servers, upstream_port: int) -> Floor:
    """A bare grpc.aio server making the same upstream call per request: what gRPC costs
    before any of tokenwire's code runs (`roundtrip_floor.py grpc --upstream`)."""
    url = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    script = str(Path(__file__).with_name("roundtrip_floor.py"))
    argv = [sys.executable, script, "grpc", "--upstream", url]
    process, m = servers.start("gRPC floor", argv, rf"floor: gRPC on {PORT}")
    return Floor(process.pid, int(m.group(1)))


def serving_pids(pid: int, workers: int) -> tuple[int, ...]:
    """The processes doing tokenwire's work: the workers, when a supervisor runs them."""
    if workers == 1:
        return (pid,)
    return tuple(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def measure_all(pool: Executor, servers: Servers, targets: Sequence[Target], plan: Plan) -> Results:
    """Every measurement of every target, once per round, interleaved."""
    results: Results = {}
    for r in range(plan.rounds):
        # ABBA: odd rounds go in reverse, so that no target always runs in the same place (on
        # a shared machine, swapping two runs' order alone moved CPU per request by 5-8%).
        for target in targets if r % 2 == 0 else targets[::-1]:
            for measure in target.measures:
                job = plan.job(target, measure)
                runner = grpc_h2load.run if job.kind == "grpc-h2load" else load.run
                outcome = pool.submit(runner, job).result(timeout=4 * plan.time_limit + 60)
                servers.check()
                results.setdefault((target.name, measure), []).append(outcome)
                samples = outcome.first_ns if measure == "stream" else outcome.total_ns
                print(
                    f"[round {r + 1}/{plan.rounds}] {target.name:30} {measure:6} "
                    f"n={outcome.completed:5} {rps(outcome):8.0f} req/s  "
                    f"p50 {percentile(samples, 50):.3f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    return results


# --- statistics and the report ------------------------------------------------------------


def percentile(ns: Sequence[int], p: float) -> float:
    """Nearest-rank percentile of nanosecond samples, in milliseconds."""
    if not ns:
        return float("nan")
    ordered = sorted(ns)
    return ordered[max(1, math.ceil(len(ordered) * p / 100)) - 1] / 1e6


def rps(o: load.Outcome) -> float:
    return o.completed / o.elapsed if o.elapsed else float("nan")


def cpu_us(o: load.Outcome) -> tuple[float, ...]:
    """CPU µs per request of each watched process."""
    return tuple(cpu / max(o.completed, 1) * 1e6 for cpu in o.server_cpu)


def over_rounds(outcomes: Sequence[load.Outcome], stat: Callable[[load.Outcome], float]) -> float:
    return statistics.median(stat(o) for o in outcomes)


def ms_at(results: Results, name: str, measure: Measure, q: float, first: bool = False) -> float:
    """The median over rounds of one percentile, in ms (`first`: to the first event)."""
    return over_rounds(
        results[name, measure], lambda o: percentile(o.first_ns if first else o.total_ns, q)
    )


def ms(v: float) -> str:
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def markdown(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def latency_table(targets: Sequence[Target], results: Results) -> str:
    rows = []
    for t in targets:
        row = [t.name, ms(ms_at(results, t.name, "c1", 50)), ms(ms_at(results, t.name, "c1", 99))]
        for m in ("c16", "c64"):
            row.append(f"{over_rounds(results[t.name, m], rps):,.0f}")
            row += [ms(ms_at(results, t.name, m, q)) for q in (50, 99)]
        rows.append(row)
    headers = ["path", "p50 ms c=1", "p99 ms c=1", "req/s c=16", "p50 ms c=16", "p99 ms c=16",
               "req/s c=64", "p50 ms c=64", "p99 ms c=64"]  # fmt: skip
    return markdown(headers, rows)


def ttfb_table(targets: Sequence[Target], results: Results) -> str:
    rows = []
    for t in (t for t in targets if "stream" in t.measures):
        first = [ms(ms_at(results, t.name, "stream", q, first=True)) for q in (50, 99)]
        what = "first SSE data: event" if t.kind == "rest" else "first message"
        rows.append([t.name, what, *first, ms(ms_at(results, t.name, "stream", 50))])
    return markdown(["path", "first", "p50 ms", "p99 ms", "whole stream p50 ms"], rows)


def added_table(results: Results) -> str:
    direct = ms_at(results, DIRECT, "c1", 50)
    first = ms_at(results, DIRECT, "stream", 50, first=True)
    rows = [
        [
            name,
            ms(ms_at(results, name, "c1", 50) - direct),
            ms(ms_at(results, name, "stream", 50, first=True) - first)
            if (name, "stream") in results
            else "—",
        ]
        for name in measured(results, (*THROUGH, *FLOORS))
    ]
    return markdown(["path", "added p50 ms, c=1 unary", "added p50 ms, first event"], rows)


def cpu_table(targets: Sequence[Target], results: Results) -> str:
    rows = []
    for t in targets:
        got = results[t.name, "c16"]
        per_pid = [statistics.median(cpu_us(o)[i] for o in got) for i in range(len(t.watch))]
        serving = f"{sum(per_pid[:-1]):,.0f}" if len(per_pid) > 1 else "—"
        rows.append([t.name, serving, f"{per_pid[-1]:,.0f}"])
    return markdown(["path", "tokenwire (or floor) CPU µs/req", "upstream CPU µs/req"], rows)


def measured(results: Results, names: Sequence[str] = THROUGH) -> list[str]:
    """Those of `names` (by default the paths through tokenwire) this run measured."""
    return [name for name in names if (name, "c1") in results]


def verdicts(results: Results) -> list[str]:
    lines = []
    for name in measured(results):
        added, rate, p99 = headline(results, name)
        fast = "met" if added < 1 else "NOT met"
        loaded = "met" if rate >= MIN_RATE and p99 < 50 else "NOT met"
        lines.append(
            f"- {name}: adds {added:.3f} ms at p50, c=1 (target < 1 ms: {fast}); c=64: "
            f"{rate:,.0f} req/s, p99 {p99:.1f} ms "
            f"(target ≥ {MIN_RATE:,} req/s, p99 < 50 ms: {loaded})"
        )
    for name in measured(results, FLOORS):
        added, rate, p99 = headline(results, name)
        lines.append(
            f"- for scale, {name} (no tokenwire code): adds {added:.3f} ms at p50, c=1; "
            f"c=64: {rate:,.0f} req/s, p99 {p99:.1f} ms"
        )
    return lines


def headline(results: Results, name: str) -> tuple[float, float, float]:
    """What the targets judge: ms added over the direct call at p50, c=1; req/s and p99 ms
    at c=64."""
    added = ms_at(results, name, "c1", 50) - ms_at(results, DIRECT, "c1", 50)
    return added, over_rounds(results[name, "c64"], rps), ms_at(results, name, "c64", 99)


def notes(results: Results, plan: Plan) -> list[str]:
    out = []
    for (name, measure), outcomes in results.items():
        errors = [e for o in outcomes for e in o.errors]
        if errors:
            out.append(f"- {name} {measure}: {len(errors)} failed requests, e.g. {errors[0]}")
        if any(o.completed < plan.count(measure) for o in outcomes):
            out.append(f"- {name} {measure}: stopped by the {plan.time_limit:g} s limit")
    slow = [n for n in (REST,) if 38 < ms_at(results, n, "c1", 50) < 50]
    if slow:
        out.append(
            f"- {slow[0]}: p50 ≈ 40 ms at c=1 is Nagle's algorithm meeting delayed ACKs: the "
            "gateway's listening socket lacks TCP_NODELAY (see roundtrip.py's note)."
        )
    return out


def header(plan: Plan) -> str:
    load1, load5, _ = os.getloadavg()
    return (
        f"tokenwire in front of a fake OpenAI upstream; {os.cpu_count()} cores, load average "
        f"{load1:.2f}/{load5:.2f}; Python {platform.python_version()}, uvicorn "
        f"{uvicorn.__version__}.\nc=1: {plan.requests} requests after {plan.warmup} warm-up; "
        f"c=16 and c=64: {plan.loaded} requests; streams: {plan.count('stream')}. Each number "
        f"is the median of {plan.rounds} interleaved round(s). REST: HTTP/1.1 keep-alive, one "
        "connection per concurrent client; gRPC: one channel (h2load: one connection) shared "
        "by the clients. tokenwire reaches the upstream over its pooled aiohttp session, "
        "streaming only for streamed calls. tokenwire "
        f"serve --workers {plan.workers}."
    )


def report(plan: Plan, targets: Sequence[Target], results: Results) -> str:
    parts = [
        header(plan),
        "## Unary round trip\n\n" + latency_table(targets, results),
        "## Streaming: time to first event, c=1\n\n" + ttfb_table(targets, results),
        "## What tokenwire adds over the direct call\n\n" + added_table(results),
        "## CPU per request at c=16\n\n" + cpu_table(targets, results),
        "## Targets\n\n" + "\n".join(verdicts(results)),
    ]
    found = notes(results, plan)
    if found:
        parts.append("## Notes\n\n" + "\n".join(found))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve_upstream:
        serve_upstream()
        return
    plan = make_plan(args)
    started = time.monotonic()
    context = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory() as tmp,
        Servers() as servers,
        ProcessPoolExecutor(1, mp_context=context) as pool,
    ):
        targets = start_servers(servers, shlex.split(args.tokenwire), Path(tmp), plan.workers)
        results = measure_all(pool, servers, targets, plan)
    print(report(plan, targets, results))
    print(f"\n(took {time.monotonic() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
