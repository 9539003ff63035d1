"""The models service: what `/v1/models` lists, from the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from grpc.aio import ServicerContext

from gateway.transcode import enum_names
from server.routing.catalog import Catalog, Endpoint
from tokenwire.chat.v1 import models_pb2, models_pb2_grpc, routing_pb2

_DATA_COLLECTION = cast(
    "dict[str, routing_pb2.DataCollection.ValueType]",
    enum_names(routing_pb2.DataCollection.DESCRIPTOR).by_name,
)


def model_message(
    model_id: str, endpoints: Sequence[Endpoint], aliases: Sequence[str]
) -> models_pb2.Model:
    first = endpoints[0]
    out = models_pb2.Model(
        id=model_id,
        object="model",
        created=first.created,
        owned_by=first.owned_by,
        provider=first.name,
        aliases=aliases,
        endpoints=[_endpoint(e) for e in endpoints],
    )
    if first.context_length is not None:
        out.context_length = first.context_length
    return out


def _endpoint(e: Endpoint) -> models_pb2.ModelEndpoint:
    out = models_pb2.ModelEndpoint(
        provider=e.name,
        pricing=models_pb2.Pricing(prompt=e.prompt_price, completion=e.completion_price),
        zdr=e.zdr,
    )
    if e.context_length is not None:
        out.context_length = e.context_length
    if e.quantization:
        out.quantization = e.quantization
    if e.data_collection in _DATA_COLLECTION:
        out.data_collection = _DATA_COLLECTION[e.data_collection]
    return out


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def ListModels(
        self,
        request: models_pb2.ListModelsRequest,
        context: ServicerContext[models_pb2.ListModelsRequest, models_pb2.ListModelsResponse],
    ) -> models_pb2.ListModelsResponse:
        models = [
            model_message(m, endpoints, self._catalog.aliases_of(m))
            for m, endpoints in self._catalog.models()
        ]
        return models_pb2.ListModelsResponse(object="list", data=models)

    async def GetModel(
        self,
        request: models_pb2.GetModelRequest,
        context: ServicerContext[models_pb2.GetModelRequest, models_pb2.GetModelResponse],
    ) -> models_pb2.GetModelResponse:
        endpoints = self._catalog.endpoints(request.model or "-")
        canonical = self._catalog.canonical(request.model)
        model = model_message(request.model, endpoints, self._catalog.aliases_of(canonical))
        return models_pb2.GetModelResponse(model=model)
