"""A non-streamed call that ends when its client disconnects.

uvicorn tells an app that the client left only through `receive()`, which
then answers `http.disconnect`. So a call that lasts gets a watch on it: a
task waiting on `receive()` that cancels the request's task when the client
goes, which cancels the call (in-process, the pipeline and the provider's
upstream request; over gRPC, the RPC). The watch starts only once the call
has lasted `WATCH_AFTER` seconds: most calls end sooner, and a watch costs
about 10 µs of CPU; a client that left is noticed that much later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from gateway.http import Receive, wait_disconnect

T = TypeVar("T")
WATCH_AFTER = 0.05


async def unless_disconnected(call: Awaitable[T], receive: Receive) -> T:
    """`call`'s result, unless the client disconnects first: then the call is cancelled
    and ConnectionAbortedError raised."""
    request = asyncio.current_task()
    assert request is not None  # called from a request's task
    watch = _Watch(receive, request)
    timer = asyncio.get_running_loop().call_later(WATCH_AFTER, watch.start)
    try:
        return await call
    except asyncio.CancelledError:
        if not watch.fired:
            raise  # cancelled from elsewhere (shutdown)
        request.uncancel()
        raise ConnectionAbortedError("the client disconnected") from None
    finally:
        # Before any other task runs: the watch cannot cancel the request past this point.
        timer.cancel()
        watch.stop()


class _Watch:
    """Cancels `request` when the client disconnects, once started."""

    def __init__(self, receive: Receive, request: asyncio.Task[object]) -> None:
        self._receive = receive
        self._request = request
        self._task: asyncio.Task[None] | None = None
        self.fired = False

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._watch())

    def stop(self) -> None:
        # Let go of the task: cancelled, it keeps its CancelledError, whose traceback holds
        # `_watch`'s frame and so this watch; a reference back would make a cycle per call
        # that only the cyclic GC frees, which runs rarely here (server.runtime.cli).
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def _watch(self) -> None:
        await wait_disconnect(self._receive)
        self.fired = True
        self._request.cancel()
