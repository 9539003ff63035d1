"""A client that leaves a non-streamed request cancels it, down to the upstream's connection.

A real upstream on 127.0.0.1 holds the request open; the client hangs up; the
upstream must see its connection closed soon after, having received the POST
once (the router retries, but a cancelled request is not retried). Both ways
the gateway calls the server: in-process, and the standalone gateway over gRPC.
"""

from __future__ import annotations

import asyncio
import gc

import orjson
import pytest

from gateway import disconnect
from gateway.http import ASGIMessage
from server.runtime import app, upstreams
from server.runtime.config import Config
from tests.conftest import StartService
from tests.routing.test_fallback import eventually, records
from tests.routing.upstream_server import Reply, Upstream

NEVER = asyncio.Event()  # never set: the upstream holds until its client leaves
BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: tokenwire\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


async def http_port(service: app.Service, via: str, stack: list[app.Service]) -> int:
    if via == "in-process":
        return service.http_port
    config = Config(host="127.0.0.1", http_port=0, grpc_target=f"127.0.0.1:{service.grpc_port}")
    gateway = await app.start_gateway(config)
    stack.append(gateway)
    return gateway.http_port


@pytest.mark.parametrize("via", ["in-process", "standalone gateway"])
async def test_a_client_that_leaves_cancels_its_unary_request(
    start_service: StartService, via: str
) -> None:
    gateways: list[app.Service] = []
    async with Upstream(Reply(hold=NEVER)) as up:
        providers = {"p": {"base_url": up.url, "api_key_env": "KEY"}}
        config = upstreams.parse(providers, [{"id": "m", "provider": "p"}], {"KEY": "k"})
        service = await start_service([], upstreams=config, retries=2, retry_base_delay=0.01)
        try:
            port = await http_port(service, via, gateways)
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            await eventually(lambda: len(up.requests) == 1)
            writer.close()  # the client leaves while the upstream holds its answer
            await asyncio.wait_for(up.disconnected.wait(), timeout=5)
            # The request is over (its usage is recorded): no retry can follow.
            await eventually(lambda: _recorded(service))
            assert len(up.requests) == 1
            assert (await records(service))[-1].cancelled
        finally:
            for gateway in gateways:
                await gateway.stop()


async def _recorded(service: app.Service) -> bool:
    return len(await records(service)) == 1


async def test_a_call_that_outlasts_the_watch_leaves_no_garbage_cycle() -> None:
    """The watch, once cancelled, is freed by reference counting: the cyclic GC runs
    rarely in a server (server.runtime.cli), and a cycle per call would pile up."""

    async def receive() -> ASGIMessage:
        await NEVER.wait()  # the client never leaves
        raise AssertionError("unreachable")

    async def call() -> int:
        await asyncio.sleep(disconnect.WATCH_AFTER * 2)  # lasts past the watch's start
        return 1

    gc.collect()
    gc.disable()
    try:
        assert await disconnect.unless_disconnected(call(), receive) == 1
        for _ in range(3):  # loop turns: the cancelled watch's task runs to its end
            await asyncio.sleep(0)
        assert not [o for o in gc.get_objects() if isinstance(o, disconnect._Watch)]
    finally:
        gc.enable()
