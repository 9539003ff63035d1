"""Every table of the README's Performance section, in one command.

    .venv/bin/python bench/all.py [--quick] [--tokenwire "CMD"]

Runs `upstream.py` (unary and streamed round trips through tokenwire beside
the direct call and a bare grpc.aio floor: added latency, requests/s at
c=16 and c=64, CPU per request) and then `streams.py` (CPU per streamed
chunk, req/s ratios, paced streams, sustained load on a 20 ms upstream),
and prints their tables one after the other. `--quick` is a smoke run of a
few minutes; the full run takes about half an hour on two cores.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import streams
import upstream


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="shorter runs, one round each")
    p.add_argument("--tokenwire", default=str(Path(sys.executable).parent / "tokenwire"))
    args = p.parse_args(argv)
    common = ["--tokenwire", args.tokenwire] + (["--quick"] if args.quick else [])
    print("# Round trips (bench/upstream.py)\n", flush=True)
    upstream.main(common)
    print("\n# Streaming at scale (bench/streams.py)\n", flush=True)
    streams.main(common)


if __name__ == "__main__":
    main()
