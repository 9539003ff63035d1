"""`tokenwire serve --workers N`: several processes behind one HTTP and one gRPC port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import httpx
import pytest

from server.runtime.config import Config
from tests.imports import loaded_after
from tests.serving import Serving, run_to_exit, serving
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2

BODY = {"model": "fake-echo", "messages": [{"role": "user", "content": "a b c"}]}
SERVING_ONLY = ("server.runtime.compose", "aiohttp", "uvloop")  # not in the supervisor
CLIENTS = 24  # connections held open at once: all on one worker has odds of 2 in 2**24


def workers_of(served: Serving) -> list[int]:
    path = Path(f"/proc/{served.process.pid}/task/{served.process.pid}/children")
    return [int(pid) for pid in path.read_text().split()]


def established(pid: int, port: int) -> int:
    """How many TCP connections to `port` process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        count += state == "01" and int(local.split(":")[1], 16) == port and inode in inodes
    return count


async def test_workers_share_the_ports_and_keep_every_record(tmp_path: Path) -> None:
    db = tmp_path / "tokenwire.db"
    async with serving(f"sqlite://{db}", "--workers", "2") as served, AsyncExitStack() as stack:
        workers = workers_of(served)
        assert len(workers) == 2
        url = f"http://127.0.0.1:{served.http_port}/v1/chat/completions"
        clients = [await stack.enter_async_context(httpx.AsyncClient()) for _ in range(CLIENTS)]
        answers = await asyncio.gather(*(c.post(url, json=BODY) for c in clients))
        assert [a.status_code for a in answers] == [200] * CLIENTS
        # Every connection is still open: the kernel spread them over both workers.
        held = [established(pid, served.http_port) for pid in workers]
        assert sum(held) == CLIENTS and min(held) > 0, held
        async with grpc.aio.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
            ask = chat_pb2.CreateChatCompletionRequest(
                model="fake-echo",
                messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="hi")],
            )
            reply = await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(ask)
        assert reply.model == "fake-echo"
    # Both workers drained on SIGTERM and wrote to the one database.
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT count(*) FROM usage_records").fetchone()
    assert count == CLIENTS + 1
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


async def test_a_worker_that_dies_takes_the_others_down(tmp_path: Path) -> None:
    database = f"sqlite://{tmp_path / 'tokenwire.db'}"
    async with serving(database, "--workers", "2", clean_exit=False) as served:
        first, second = workers_of(served)
        os.kill(first, signal.SIGKILL)
        assert await asyncio.wait_for(served.process.wait(), timeout=15) == 1
        assert not Path(f"/proc/{second}").exists()


async def test_workers_that_cannot_start_fail_the_whole_at_once(tmp_path: Path) -> None:
    database = f"sqlite://{tmp_path / 'tokenwire.db'}"
    missing = str(tmp_path / "missing.gguf")
    status, err = await run_to_exit(
        database, "--workers", "2", "--provider", "local", "--model-path", missing
    )
    assert status == 1
    assert b"workers did not start" in err


def test_the_supervisor_prepares_in_a_child_that_keeps_what_it_imports(tmp_path: Path) -> None:
    """Migrating and checking import nearly all of the server; the supervisor, which then
    only waits on its workers, holds none of it (~55 MiB of anonymous memory)."""
    code = (
        "from server.runtime import cli, workers\nfrom server.runtime.config import Config\n"
        f"config = Config(provider='none', data_dir={str(tmp_path)!r})\n"
        "assert workers._prepared_apart(config) == 0"
    )
    assert loaded_after(code, SERVING_ONLY) == []
    with sqlite3.connect(tmp_path / "tokenwire.db") as conn:  # the child migrated it
        assert conn.execute("SELECT count(*) FROM usage_records").fetchone() == (0,)


def test_at_least_one_worker() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Config(workers=0)


async def test_workers_follow_a_supervisor_killed_outright(tmp_path: Path) -> None:
    database = f"sqlite://{tmp_path / 'tokenwire.db'}"
    async with serving(database, "--workers", "2", clean_exit=False) as served:
        handles = [os.pidfd_open(pid) for pid in workers_of(served)]
        try:
            served.process.kill()  # SIGKILL: the supervisor cannot pass anything on
            await asyncio.wait_for(asyncio.gather(*(exited(h) for h in handles)), timeout=15)
        finally:
            for h in handles:
                with contextlib.suppress(ProcessLookupError):  # gone, as it should be
                    signal.pidfd_send_signal(h, signal.SIGKILL)  # else: no orphans left behind
                os.close(h)


async def exited(pidfd: int) -> None:
    """Returns when the process behind `pidfd` has exited (the fd turns readable)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await done
    finally:
        loop.remove_reader(pidfd)
