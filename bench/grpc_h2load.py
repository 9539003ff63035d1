"""A gRPC load generator in C: nghttp2's h2load sending tokenwire's RPCs.

A grpc.aio client spends ~0.6 ms of CPU per call, as much as a third of what
the server it measures gets on these 2 cores; h2load (Debian:
`apt-get install nghttp2-client`) costs a few µs, as the REST client does.
`run(job)` sends the same `CreateChatCompletion` as gRPC frames over one
HTTP/2 connection with `job.concurrency` streams in flight, like one shared
channel, and returns an `Outcome` as `roundtrip_load.run` does. `stream_cpu`
streams answers of N chunks through `StreamChatCompletion` the same way and
returns the server's CPU per stream, for `streams.py`'s per-chunk table: there
a grpc.aio client is as slow per message as the server it measures, so the
two take turns sleeping and each message costs the server a wake-up.

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
from collections.abc import Sequence
from pathlib import Path

import roundtrip_load as load

from tokenwire.chat.v1 import chat_pb2

PATH = "/tokenwire.chat.v1.ChatService/CreateChatCompletion"
STREAM_PATH = "/tokenwire.chat.v1.ChatService/StreamChatCompletion"
MIN_RESPONSE = 40  # bytes of a gRPC message carrying a completion: errors carry none


def available() -> bool:
    return shutil.which("h2load") is not None


def run(job: load.Job) -> load.Outcome:
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp, "request")
        body.write_bytes(_frame(load.grpc_request().SerializeToString()))
        _h2load(job, body, job.warmup, None)
        return _measure(job, body, Path(tmp, "log"))


def stream_cpu(port: int, chunks: int, count: int, pids: Sequence[int], at_once: int) -> float:
    """CPU µs the `pids` spent per streamed answer of `chunks` chunks, `at_once` streams in
    flight, after a warm-up."""
    request = load.grpc_request()
    request.parameters.max_tokens = chunks
    job = load.Job("grpc-h2load", port, at_once, count, 0, 60.0)
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp, "request")
        body.write_bytes(
            _frame(chat_pb2.StreamChatCompletionRequest(request=request).SerializeToString())
        )
        _h2load(job, body, max(count // 10, at_once), None, STREAM_PATH)
        before = load.process_cpu(pids)
        report = _h2load(job, body, count, None, STREAM_PATH)
        after = load.process_cpu(pids)
    if errors := _errors(report, count * chunks):  # every chunk a message of its own
        raise load.BadResponse(errors[0])
    return sum(b - a for a, b in zip(before, after, strict=True)) / count * 1e6


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


def _h2load(job: load.Job, body: Path, count: int, log: Path | None, path: str = PATH) -> str:
    argv = [
        "h2load", f"--requests={count}", "--clients=1",
        f"--max-concurrent-streams={job.concurrency}", f"--data={body}",
        "--header=content-type: application/grpc", "--header=te: trailers",
        f"http://127.0.0.1:{job.port}{path}",
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
