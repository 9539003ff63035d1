"""A gRPC load generator in C: nghttp2's h2load sending tokenwire's unary RPC.

A grpc.aio client spends ~0.6 ms of CPU per call, as much as a third of what
the server it measures gets on these 2 cores; h2load (Debian:
`apt-get install nghttp2-client`) costs a few µs, as the REST client does.
`run(job)` sends the same `CreateChatCompletion` as gRPC frames over one
HTTP/2 connection with `job.concurrency` streams in flight, like one shared
channel, and returns an `Outcome` as `roundtrip_load.run` does.

h2load sees HTTP statuses, not gRPC ones, so a call counts only if it carried
a response message: the run is checked against the response bytes h2load
received, since a failed call answers with trailers alone.
"""

from __future__ import annotations

import re
import resource
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import roundtrip_load as load

PATH = "/tokenwire.chat.v1.ChatService/CreateChatCompletion"
MIN_RESPONSE = 40  # bytes of a gRPC message carrying a completion: errors carry none


def available() -> bool:
    return shutil.which("h2load") is not None


def run(job: load.Job) -> load.Outcome:
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp, "request")
        body.write_bytes(_frame(load.grpc_request().SerializeToString()))
        _h2load(job, body, job.warmup, None)
        return _measure(job, body, Path(tmp, "log"))


def _frame(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def _measure(job: load.Job, body: Path, log: Path) -> load.Outcome:
    out = load.Outcome()
    server, client = load.process_cpu(job.watch), _children_cpu()
    start = time.perf_counter()
    try:
        report = _h2load(job, body, job.requests, log)
    finally:
        out.elapsed = time.perf_counter() - start
        out.client_cpu = _children_cpu() - client
        out.server_cpu = tuple(
            b - a for a, b in zip(server, load.process_cpu(job.watch), strict=True)
        )
    for line in log.read_text().splitlines():
        _, status, micros = line.split("\t")[:3]
        if status == "200":
            out.total_ns.append(int(micros) * 1000)
    out.first_ns = list(out.total_ns)  # unary: the first byte is the whole answer
    out.errors = _errors(report, len(out.total_ns))
    if out.errors:
        out.total_ns = out.first_ns = []
    return out


def _h2load(job: load.Job, body: Path, count: int, log: Path | None) -> str:
    argv = [
        "h2load", f"--requests={count}", "--clients=1",
        f"--max-concurrent-streams={job.concurrency}", f"--data={body}",
        "--header=content-type: application/grpc", "--header=te: trailers",
        f"http://127.0.0.1:{job.port}{PATH}",
    ]  # fmt: skip
    if log is not None:
        argv.append(f"--log-file={log}")
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=2 * job.time_limit + 30, check=True
    )
    return done.stdout


def _errors(report: str, succeeded: int) -> list[str]:
    data = re.search(r"\((\d+)\) data", report)
    if succeeded == 0 or data is None or int(data.group(1)) < succeeded * MIN_RESPONSE:
        return ["h2load: calls answered without a response message:\n" + report[-600:]]
    return []


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
