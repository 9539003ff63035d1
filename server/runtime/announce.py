"""The one stderr line that says where tokenwire serves, which scripts and tests wait for.

A module of its own so that the `--workers` supervisor, which imports as
little as it can, says it as a single process does."""

from __future__ import annotations

import sys


def announce_ports(host: str, grpc_port: int | None, http_port: int) -> None:
    grpc_part = f"gRPC on {host}:{grpc_port}, " if grpc_port else ""
    line = f"tokenwire: {grpc_part}HTTP on http://{host}:{http_port}/v1"
    print(line, file=sys.stderr, flush=True)
