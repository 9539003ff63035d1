"""The models service: what `/v1/models` lists."""

from __future__ import annotations

from typing import Any

from server.errors import TokenwireError
from server.registry import Registry, Target
from server.status import abort
from tokenwire.chat.v1 import models_pb2, models_pb2_grpc


def model_message(model_id: str, target: Target) -> models_pb2.Model:
    card = target.card
    out = models_pb2.Model(
        id=model_id,
        object="model",
        created=card.created,
        owned_by=card.owned_by,
        provider=target.provider.name,
    )
    if card.context_length is not None:
        out.context_length = card.context_length
    return out


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: Any
    ) -> models_pb2.ListModelsResponse:
        models = [model_message(k, t) for k, t in self._registry.cards()]
        return models_pb2.ListModelsResponse(object="list", data=models)

    async def GetModel(
        self, request: models_pb2.GetModelRequest, context: Any
    ) -> models_pb2.GetModelResponse:
        try:
            target = self._registry.resolve(request.model or "-")
        except TokenwireError as e:
            await abort(context, e)
        return models_pb2.GetModelResponse(model=model_message(request.model, target))
