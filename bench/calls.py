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
import upstream
from roundtrip_procs import Servers

HERE = Path(__file__).resolve().parent
SERVING = r"gRPC on 127\.0\.0\.1:(\d+), HTTP on http://127\.0\.0\.1:(\d+)/v1"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, default=HERE.parent, help="the checkout to run")
    p.add_argument("--kind", default="rest", choices=["rest", "grpc", "rest-sse", "grpc-stream"])
    p.add_argument("-c", "--concurrency", type=int, default=16)
    p.add_argument("-n", "--requests", type=int, default=1000)
    p.add_argument("--top", type=int, default=25, help="functions listed (by calls)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Servers() as servers:
        stats, done = profile(servers, a, Path(tmp))
    report(stats, done, a.top)


def profile(servers: Servers, a: argparse.Namespace, tmp: Path) -> tuple[pstats.Stats, int]:
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
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        warm = load.Job(a.kind, port, a.concurrency, a.requests // 2, 100, 30.0)
        pool.submit(load.run, warm).result()
        os.kill(server.pid, signal.SIGUSR1)
        job = load.Job(a.kind, port, a.concurrency, a.requests, 0, 60.0)
        done = pool.submit(load.run, job).result().completed
        os.kill(server.pid, signal.SIGUSR2)
    written = Path(f"{out}.{server.pid}")
    deadline = time.monotonic() + 30
    while not written.exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # written by the server's signal handler, in its own time
    time.sleep(0.5)  # and finished
    return pstats.Stats(str(written)), done


def report(stats: pstats.Stats, done: int, top: int) -> None:
    table = stats.stats  # type: ignore[attr-defined]  # pstats' own table, untyped
    by_group: collections.Counter[str] = collections.Counter()
    seconds: collections.Counter[str] = collections.Counter()
    rows = []
    for (filename, line, name), (_, calls, own, _, _) in table.items():
        group = _group(filename)
        by_group[group] += calls
        seconds[group] += own
        rows.append((calls, own, f"{group}: {name} ({Path(filename).name}:{line})"))
    total = sum(by_group.values())
    print(f"{done} requests profiled: {total / done:.1f} calls and "
          f"{sum(seconds.values()) / done * 1e6:.0f} profiled µs per request\n")  # fmt: skip
    print("| package | calls/request | profiled µs/request |\n|---|---|---|")
    for group, calls in by_group.most_common():
        print(f"| {group} | {calls / done:.1f} | {seconds[group] / done * 1e6:.1f} |")
    print("\n| function | calls/request | profiled µs/request |\n|---|---|---|")
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
