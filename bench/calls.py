"""Python calls per request through tokenwire: a count a busy machine does not blur.

CPU per request moves with the machine's load (on a shared 2-core box, by more than most
changes worth measuring, and by 5-8% with nothing but the order of two runs); the Python
calls a request makes do not. This starts the fake upstream of `upstream.py` and
`tokenwire serve` from a source tree (`--tree`, default this checkout: `python -m server`
run there, as `-m` imports from the working directory before PYTHONPATH) with `profiled/`
on PYTHONPATH, whose sitecustomize turns cProfile on and off on signals. After a warm-up
it profiles `--requests` calls and prints calls and profiled µs per request, by package and
for the busiest functions. cProfile counts each resumption of a coroutine as a call, and
its µs are several times the real ones: compare trees with each other, not with CPU figures.

    .venv/bin/python bench/calls.py --kind rest            # or grpc, rest-sse, grpc-stream
    .venv/bin/python bench/calls.py --tree /path/to/other/checkout
    .venv/bin/python bench/calls.py --kind grpc-stream --per-chunk -n 200

`--per-chunk` counts per streamed chunk instead, as `streams.py` measures its CPU: `-n`
streams of 200 content chunks less `-n` of 20 (`stream_load`, 8 at a time), over 180.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import pstats
import signal
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import roundtrip_load as load
import stream_load
import upstream
from roundtrip_procs import Server, Servers
from stream_load import LONG, SHORT

HERE = Path(__file__).resolve().parent
SERVING = r"gRPC on 127\.0\.0\.1:(\d+), HTTP on http://127\.0\.0\.1:(\d+)/v1"
Table = dict[tuple[str, int, str], tuple[int, int, float, float, object]]  # pstats' own


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, default=HERE.parent, help="the checkout to run")
    p.add_argument("--kind", default="rest", choices=["rest", "grpc", "rest-sse", "grpc-stream"])
    p.add_argument("-c", "--concurrency", type=int, default=16)
    p.add_argument("-n", "--requests", type=int, default=1000)
    p.add_argument("--top", type=int, default=25, help="functions listed (by calls)")
    p.add_argument("--per-chunk", action="store_true", help="streams: per chunk (see above)")
    a = p.parse_args()
    if a.per_chunk and a.kind not in ("grpc-stream", "rest-sse"):
        p.error("--per-chunk counts streams: --kind grpc-stream or rest-sse")
    with tempfile.TemporaryDirectory() as tmp, Servers() as servers:
        table, done = (per_chunk if a.per_chunk else profile)(servers, a, Path(tmp))
    report(table, done, a.top, "chunk" if a.per_chunk else "request")


def serve(servers: Servers, a: argparse.Namespace, tmp: Path) -> tuple[Server, int, Path]:
    """The upstream and a profiled tokenwire; its port for `a.kind`, where its stats go."""
    argv = [sys.executable, str(HERE / "upstream.py"), "--serve-upstream"]
    _, m = servers.start("fake upstream", argv, rf"{upstream.ANNOUNCE}(\d+)")
    config = tmp / "tokenwire.toml"
    config.write_text(upstream.CONFIG.format(port=m.group(1), model=upstream.MODEL, data_dir=tmp))
    tree, out = a.tree.resolve(), tmp / "stats"
    env = [f"PYTHONPATH={HERE / 'profiled'}:{tree}:{tree / 'clients/python'}"]
    serve = f"cd {tree} && exec {sys.executable} -m server serve --config {config} "
    serve += "--http-port 0 --grpc-port 0 --log-level warning"
    argv = ["env", f"TOKENWIRE_PROFILE={out}", *env, "sh", "-c", serve]
    server, m = servers.start("tokenwire serve", argv, SERVING, timeout=90)
    port = int(m.group(1) if a.kind.startswith("grpc") else m.group(2))
    return server, port, Path(f"{out}.{server.pid}")


def profile(servers: Servers, a: argparse.Namespace, tmp: Path) -> tuple[Table, int]:
    server, port, written = serve(servers, a, tmp)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        warm = load.Job(a.kind, port, a.concurrency, a.requests // 2, 100, 30.0)
        pool.submit(load.run, warm).result()
        os.kill(server.pid, signal.SIGUSR1)
        job = load.Job(a.kind, port, a.concurrency, a.requests, 0, 60.0)
        done = pool.submit(load.run, job).result().completed
        os.kill(server.pid, signal.SIGUSR2)
    return _written(written), done


def per_chunk(servers: Servers, a: argparse.Namespace, tmp: Path) -> tuple[Table, int]:
    """Calls of `-n` long streams less those of `-n` short ones, and the chunks between.

    The profile accumulates: dumped after the short streams and again after the long ones,
    the long ones' own are the second less the first."""
    server, port, written = serve(servers, a, tmp)
    kind = "grpc" if a.kind == "grpc-stream" else "rest"
    spawn = multiprocessing.get_context("spawn")
    tables = []
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        pool.submit(stream_load.cpu_per_stream, kind, port, LONG, a.requests, ()).result()
        for chunks in (SHORT, LONG):
            os.kill(server.pid, signal.SIGUSR1)
            args = (kind, port, chunks, a.requests, ())
            pool.submit(stream_load.cpu_per_stream, *args).result()
            os.kill(server.pid, signal.SIGUSR2)
            tables.append(_written(written))
            written.unlink()
    short, both = tables
    streams = a.requests + max(a.requests // 10, stream_load.CONCURRENCY)  # with its warm-up
    return _less(_less(both, short), short), streams * (LONG - SHORT)


def _written(path: Path) -> Table:
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # written by the server's signal handler, in its own time
    time.sleep(0.5)  # and finished
    table: Table = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]  # untyped
    return table


def _less(a: Table, b: Table) -> Table:
    """Calls and own seconds in `a` beyond those in `b`."""
    out: Table = {}
    for k, (primitive, calls, own, _, _) in a.items():
        was = b.get(k, (0, 0, 0.0, 0.0, None))
        out[k] = (primitive - was[0], calls - was[1], own - was[2], 0.0, None)
    return out


def report(table: Table, done: int, top: int, unit: str) -> None:
    by_group: collections.Counter[str] = collections.Counter()
    seconds: collections.defaultdict[str, float] = collections.defaultdict(float)
    rows = []
    for (filename, line, name), (_, calls, own, _, _) in table.items():
        group = _group(filename)
        by_group[group] += calls
        seconds[group] += own
        rows.append((calls, own, f"{group}: {name} ({Path(filename).name}:{line})"))
    total = sum(by_group.values())
    print(f"{done} {unit}s profiled: {total / done:.1f} calls and "
          f"{sum(seconds.values()) / done * 1e6:.1f} profiled µs per {unit}\n")  # fmt: skip
    print(f"| package | calls/{unit} | profiled µs/{unit} |\n|---|---|---|")
    for group, calls in by_group.most_common():
        print(f"| {group} | {calls / done:.1f} | {seconds[group] / done * 1e6:.1f} |")
    print(f"\n| function | calls/{unit} | profiled µs/{unit} |\n|---|---|---|")
    for calls, own, label in sorted(rows, reverse=True)[:top]:
        print(f"| {label} | {calls / done:.2f} | {own / done * 1e6:.1f} |")


def _group(filename: str) -> str:
    """Where a function lives: a package of site-packages, the standard library, builtins
    (`~`), or tokenwire's own top-level package."""
    if filename == "~":
        return "builtins"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/lib/python3" in filename or filename.startswith("<frozen"):
        return "stdlib"
    parts = Path(filename).parts
    for top in ("server", "gateway", "tokenwire"):
        if top in parts:
            i = len(parts) - 1 - parts[::-1].index(top)
            return "/".join(parts[i : i + 2]) if top != "tokenwire" else top
    return filename


if __name__ == "__main__":
    main()
