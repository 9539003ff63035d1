"""`tokenwire serve --workers N`: N processes behind one HTTP and one gRPC port.

One Python process keeps one core busy at most. The supervisor migrates the
database once, picks the ports (port 0 included) and starts N ordinary
`serve` processes that bind them with SO_REUSEPORT, so the kernel spreads
connections across them. It announces the ports once every worker is ready,
passes SIGTERM and SIGINT on, and waits while the workers drain. A worker that
dies takes the others down and the supervisor exits non-zero, for whatever
supervises it (systemd, Kubernetes) to restart the whole.

What each worker keeps in memory stays its own: the local model (loaded once
per worker), circuit breakers and latency statistics, and rate-limit counters
unless `redis_url` shares them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType

from server.runtime.announce import announce_ports
from server.runtime.config import Config
from server.runtime.cpus import physical_cores

log = logging.getLogger("tokenwire.workers")

READY_ENV = "TOKENWIRE_READY_FD"  # a worker writes one byte here once it serves
SUPERVISOR_ENV = "TOKENWIRE_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
START_SECONDS = 120.0  # for every worker to be ready (each may load a model)


def notify_ready() -> bool:
    """In a worker, tell the supervisor this one serves; False when not a worker."""
    fd = os.environ.pop(READY_ENV, None)
    if fd is None:
        return False
    os.write(int(fd), b".")
    os.close(int(fd))
    return True


def follow_supervisor() -> None:
    """In a worker: have the kernel send SIGTERM when the supervisor dies, however it dies
    (even SIGKILL), so no orphan keeps serving the shared ports. Linux only."""
    supervisor = os.environ.pop(SUPERVISOR_ENV, None)
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("cannot follow the supervisor: %s", os.strerror(ctypes.get_errno()))
    elif os.getppid() != int(supervisor):  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def supervise(config: Config, argv: Sequence[str]) -> int:
    """Run `config.workers` copies of `tokenwire <argv>`; the exit status of the whole."""
    if status := _prepared_apart(config):
        return status
    if not config.redis_url:
        log.warning("rate limits are counted per worker: set redis_url to share them")
    with _metrics_dir(config) as metrics_dir:
        return _serve(replace(config, metrics_dir=metrics_dir), argv)


def _serve(config: Config, argv: Sequence[str]) -> int:
    with (
        _reserved(config.host, config.http_port) as http,
        _reserved(config.host, config.grpc_port) as grpc_,
    ):
        ports = replace(config, http_port=_port(http), grpc_port=_port(grpc_))
        pool, ready = _spawn(ports, argv)
        pool.forward_stop_signals()
        if not _all_ready(pool, ready):
            stopped = pool.stopping  # asked to stop while starting: not a failure
            pool.stop()
            return pool.wait() if stopped else max(pool.wait(), 1)
    announce_ports(ports.host, ports.grpc_port, ports.http_port)
    return pool.wait()


def _prepared_apart(config: Config) -> int:
    """Migrate once, before the workers start (each would race the others to it), and
    refuse here, once, what every worker would refuse; the exit status of that.

    In a child process: preparing imports nearly all of the server (~90 MiB), which would
    stay in the supervisor for its whole life, though all it does then is wait."""
    pid = os.fork()  # no thread runs yet: the child is a plain copy
    if pid == 0:
        status = 1
        try:
            status = _prepare_here(config)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(status)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _prepare_here(config: Config) -> int:
    """In the child: migrate and check; 1, the reason said, when it must refuse."""
    import uvloop

    from server.runtime.compose import StartupRefused

    try:
        uvloop.run(_prepare(config))
    except StartupRefused as e:
        print(f"tokenwire: {e}", file=sys.stderr)
        return 1
    return 0


async def _prepare(config: Config) -> None:
    from server.keys.store import KeyStore
    from server.runtime import app, compose
    from server.storage.migrations import migrate

    db = await app.open_storage(config)
    try:
        await migrate(db, compose.MIGRATIONS)
        await compose.check_can_start(config, KeyStore(db))
    finally:
        await db.close()


@contextlib.contextmanager
def _reserved(host: str, port: int) -> Iterator[socket.socket]:
    """A port held (bound, not listening) with SO_REUSEPORT until the workers bind it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        yield sock


@contextlib.contextmanager
def _metrics_dir(config: Config) -> Iterator[str | None]:
    """An empty directory under data_dir where the workers share their metrics, removed
    when they are done (a scrape of any worker reads all: `server.observability.metrics`)."""
    if not config.metrics:
        yield None
        return
    path = Path(config.data_dir).expanduser() / "metrics" / str(os.getpid())
    shutil.rmtree(path, ignore_errors=True)  # a pid reused from an earlier run's supervisor
    path.mkdir(parents=True)
    try:
        yield str(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _metrics_env(metrics_dir: str | None) -> dict[str, str]:
    """prometheus-client reads its variable at import; tokenwire's config reads its own."""
    if metrics_dir is None:
        return {}
    return {"PROMETHEUS_MULTIPROC_DIR": metrics_dir, "TOKENWIRE_METRICS_DIR": metrics_dir}


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


class _Pool:
    """The worker processes, and whether they were asked to stop."""

    def __init__(self, workers: Sequence[subprocess.Popen[bytes]]) -> None:
        self.workers = tuple(workers)
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True
        for w in self.workers:
            if w.returncode is None:
                w.send_signal(signal.SIGTERM)

    def forward_stop_signals(self) -> None:
        def forward(signum: int, frame: FrameType | None) -> None:
            self.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, forward)

    def wait(self) -> int:
        """Wait for every worker: 1 if one failed or left unasked (the rest are stopped)."""
        failed = False
        for worker in self._exits():
            if worker.returncode != 0 or not self.stopping:
                failed = True
                log.error("worker %d exited with %d", worker.pid, worker.returncode)
                self.stop()
        return int(failed)

    def died(self) -> bool:
        """Whether a worker has exited already (reaping it)."""
        return any(w.poll() is not None for w in self.workers)

    def _exits(self) -> Iterator[subprocess.Popen[bytes]]:
        yield from (w for w in self.workers if w.returncode is not None)  # reaped by `died`
        alive = {w.pid: w for w in self.workers if w.returncode is None}
        while alive:
            pid, status = os.wait()  # resumed after a signal handler runs (PEP 475)
            if (worker := alive.pop(pid, None)) is not None:
                worker.returncode = os.waitstatus_to_exitcode(status)
                yield worker


def worker_threads(config: Config) -> list[str]:
    """Unless told, workers share the cores between their models rather than each taking
    all of them: llama.cpp's threads spin at their barriers, so oversubscribing stalls."""
    if config.n_threads is not None or config.provider != "local":
        return []
    return ["--n-threads", str(max(1, physical_cores() // config.workers))]


def _spawn(config: Config, argv: Sequence[str]) -> tuple[_Pool, int]:
    """The workers, and the read end of the pipe each says "ready" on."""
    read, write = os.pipe()
    ports = ["--http-port", str(config.http_port), "--grpc-port", str(config.grpc_port)]
    command = [sys.executable, "-m", "server", *argv, "--workers", "1", *ports]
    command += worker_threads(config)
    env = {
        **os.environ,
        "TOKENWIRE_REUSE_PORT": "true",
        **_metrics_env(config.metrics_dir),
        READY_ENV: str(write),
        SUPERVISOR_ENV: str(os.getpid()),
    }
    try:
        workers = [
            subprocess.Popen(command, env=env, pass_fds=(write,), stdin=subprocess.DEVNULL)
            for _ in range(config.workers)
        ]
    finally:
        os.close(write)  # the workers hold their copies: EOF once all have exited
    return _Pool(workers), read


def _all_ready(pool: _Pool, ready: int) -> bool:
    """Wait (bounded) until every worker has said it serves; False once one exits first."""
    count, seen, deadline = len(pool.workers), 0, time.monotonic() + START_SECONDS
    try:
        while seen < count and (left := deadline - time.monotonic()) > 0:
            # A worker that dies early leaves the pipe open (the others hold it): look.
            if not select.select([ready], [], [], min(left, 0.5))[0]:
                if pool.died():
                    break
                continue
            said = os.read(ready, count)
            if not said:
                break  # every worker exited
            seen += len(said)
    finally:
        os.close(ready)
    if seen < count:
        log.error("%d of %d workers did not start", count - seen, count)
    return seen == count
