"""Start the servers `roundtrip.py` measures, read their ports, stop them by PID.

Each server announces its port on stderr; `Servers.start` waits a bounded
time for that line. `Servers.close` sends SIGTERM to each process it
started (and only those), then SIGKILL to any still alive after a while.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[str]
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=40))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self) -> str:
        return "".join(self.lines) or "(no output)\n"


class Servers:
    """The processes one benchmark run started; a context manager that stops them."""

    def __init__(self) -> None:
        self.started: list[Server] = []

    def __enter__(self) -> Servers:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(
        self, name: str, argv: Sequence[str], pattern: str, timeout: float = 30.0
    ) -> tuple[Server, re.Match[str]]:
        """Run `argv`; return once a stderr line matches `pattern` (or raise)."""
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        server = Server(name, proc)
        self.started.append(server)
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(server, lines), daemon=True).start()
        match = _wait_for(server, lines, re.compile(pattern), timeout)
        if match is None:
            raise RuntimeError(f"{name} did not announce its port:\n{server.tail()}")
        return server, match

    def check(self) -> None:
        """Raise if a started server has exited."""
        for s in self.started:
            if s.proc.poll() is not None:
                raise RuntimeError(f"{s.name} exited with {s.proc.returncode}:\n{s.tail()}")

    def close(self, timeout: float = 15.0) -> None:
        for s in reversed(self.started):
            if s.proc.poll() is None:
                s.proc.terminate()
        deadline = time.monotonic() + timeout
        for s in reversed(self.started):
            try:
                s.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait()
        self.started.clear()


def _pump(server: Server, lines: queue.Queue[str | None]) -> None:
    """Keep reading stderr so the pipe never fills; remember the last lines."""
    assert server.proc.stderr is not None
    for line in server.proc.stderr:
        server.lines.append(line)
        lines.put(line)
    lines.put(None)


def _wait_for(
    server: Server, lines: queue.Queue[str | None], pattern: re.Pattern[str], timeout: float
) -> re.Match[str] | None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return None
        if line is None:
            return None
        if match := pattern.search(line):
            return match
    return None
