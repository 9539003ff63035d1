"""`tokenwire serve` as a child process, the way a user runs it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

ANNOUNCE = re.compile(r"gRPC on 127\.0\.0\.1:(\d+), HTTP on http://127\.0\.0\.1:(\d+)/v1")
START_SECONDS = 60


@dataclass(frozen=True)
class Serving:
    process: asyncio.subprocess.Process
    grpc_port: int
    http_port: int


def serve_command(database_url: str, *options: str) -> list[str]:
    """`tokenwire serve` on ports picked by the OS, logging warnings and worse."""
    return [
        sys.executable, "-m", "server", "serve", "--http-port", "0", "--grpc-port", "0",
        "--log-level", "warning", "--database-url", database_url, *options,
    ]  # fmt: skip


async def run_to_exit(database_url: str, *options: str) -> tuple[int | None, bytes]:
    """`tokenwire serve` that is expected to stop by itself: its status and stderr."""
    process = await asyncio.create_subprocess_exec(
        *serve_command(database_url, *options), stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=START_SECONDS)
    return process.returncode, err


@asynccontextmanager
async def serving(
    database_url: str, *options: str, clean_exit: bool = True
) -> AsyncIterator[Serving]:
    """`tokenwire serve` with the fake provider on ports picked by the OS.

    Leaving the block sends SIGTERM (unless the process already exited); the
    process must then end within a bounded time, with status 0 if `clean_exit`.
    """
    process = await asyncio.create_subprocess_exec(
        *serve_command(database_url, "--provider", "fake", *options),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ports = await asyncio.wait_for(_announced(process), timeout=START_SECONDS)
        yield Serving(process, *ports)
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(process.wait(), timeout=15)
        assert status == 0 or not clean_exit
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()


async def _announced(process: asyncio.subprocess.Process) -> tuple[int, int]:
    """The ports from the start-up line; earlier lines (warnings) are passed over."""
    assert process.stderr is not None
    seen = []
    while line := (await process.stderr.readline()).decode():
        if found := ANNOUNCE.search(line):
            return int(found.group(1)), int(found.group(2))
        seen.append(line)
    raise AssertionError(f"tokenwire exited without serving:\n{''.join(seen)}")
