"""One boundary on both paths: a call served over gRPC, through the gateway in-process, or
through the gateway over a channel ends alike. An error carries the response metadata the
servicer set; a bug is INTERNAL (a 500) with exactly one log line naming the request."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from grpc.aio import ServicerContext

from gateway.app import Gateway
from gateway.config import GatewayConfig
from gateway.in_process import InProcessInvoker, captured
from gateway.invoker import ChannelInvoker, Invoker
from server.errors import NotFound
from server.rpc import boundary
from tests.keys.harness import trailing
from tokenwire.chat.v1 import models_pb2, models_pb2_grpc

SERVICES = (models_pb2.DESCRIPTOR.services_by_name["ModelService"],)
HEADER = "x-ratelimit-remaining-requests"


class Broken(models_pb2_grpc.ModelServiceServicer):
    """Lists with a bug; gets with an error after setting response metadata."""

    async def ListModels(
        self,
        request: models_pb2.ListModelsRequest,
        context: ServicerContext[models_pb2.ListModelsRequest, models_pb2.ListModelsResponse],
    ) -> models_pb2.ListModelsResponse:
        raise RuntimeError("a bug")

    async def GetModel(
        self,
        request: models_pb2.GetModelRequest,
        context: ServicerContext[models_pb2.GetModelRequest, models_pb2.GetModelResponse],
    ) -> models_pb2.GetModelResponse:
        boundary.CALL.get().headers[HEADER] = "7"
        raise NotFound(f"No model '{request.model}'.", param="model")


@dataclass
class Paths:
    channel: grpc.aio.Channel
    registrations: list[tuple[Any, Any]]

    def rest(self, path: str) -> httpx.AsyncClient:
        invoker: Invoker = (
            InProcessInvoker(captured(self.registrations, boundary.in_process))
            if path == "in-process"
            else ChannelInvoker(self.channel)
        )
        app = Gateway(SERVICES, invoker, GatewayConfig())
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4242))
        return httpx.AsyncClient(transport=transport, base_url="http://tokenwire")


@pytest.fixture
async def paths() -> AsyncIterator[Paths]:
    registrations: list[tuple[Any, Any]] = [
        (models_pb2_grpc.add_ModelServiceServicer_to_server, Broken())
    ]
    server = grpc.aio.server()
    wrapped = boundary.Boundary(server, boundary.Calls())
    for add, servicer in registrations:
        add(servicer, wrapped)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Paths(channel, registrations)
    await server.stop(None)


def bug_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tokenwire.rpc" and r.levelno == logging.ERROR and request_id in r.getMessage()
    ]


async def test_a_bug_over_grpc_is_internal_with_one_log_line(
    paths: Paths, caplog: pytest.LogCaptureFixture
) -> None:
    stub = models_pb2_grpc.ModelServiceStub(paths.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListModels(models_pb2.ListModelsRequest(), metadata=(("x-request-id", "r-1"),))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error"  # the bug's own words stay in the log
    assert len(bug_lines(caplog, "r-1")) == 1


@pytest.mark.parametrize("path", ["in-process", "channel"])
async def test_a_bug_over_rest_is_a_500_with_one_log_line(
    paths: Paths, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    async with paths.rest(path) as client:
        response = await client.get("/v1/models", headers={"x-request-id": f"r-{path}"})
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "internal error"
    assert len(bug_lines(caplog, f"r-{path}")) == 1


async def test_an_error_over_grpc_carries_the_response_metadata(paths: Paths) -> None:
    stub = models_pb2_grpc.ModelServiceStub(paths.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetModel(models_pb2.GetModelRequest(model="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert trailing(caught.value.trailing_metadata())[HEADER] == "7"


@pytest.mark.parametrize("path", ["in-process", "channel"])
async def test_an_error_over_rest_carries_the_response_metadata(paths: Paths, path: str) -> None:
    async with paths.rest(path) as client:
        response = await client.get("/v1/models/nope")
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "model"
    assert response.headers[HEADER] == "7"
