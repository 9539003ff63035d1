"""Which local models are in memory: each loaded on first use, at most `limit` at once.

Used only from the provider's worker thread, so it needs no lock: a request
whose model is not loaded yet loads it in its turn, after evicting the model
used least recently when the limit is reached. Requests queued behind it wait
for their turn as they would behind a long generation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from server.errors import NotFound
from server.providers.llama.models import LocalModel


class _Closable(Protocol):
    def close(self) -> None: ...


E = TypeVar("E", bound=_Closable)


class Residents(Generic[E]):
    """The loaded models, least recently used first."""

    def __init__(
        self, models: Sequence[LocalModel], limit: int, load: Callable[[LocalModel], E]
    ) -> None:
        if limit < 1:
            raise ValueError(f"at least one local model must fit in memory, not {limit}")
        self._models = {m.id: m for m in models}
        self._limit = limit
        self._load = load
        self._loaded: OrderedDict[str, E] = OrderedDict()

    def get(self, model_id: str) -> E:
        """The loaded model `model_id`, loading it (and evicting another) if needed."""
        loaded = self._loaded.get(model_id)
        if loaded is not None:
            self._loaded.move_to_end(model_id)
            return loaded
        model = self._models.get(model_id)
        if model is None:
            raise NotFound(f"The local model '{model_id}' does not exist.", code="model_not_found")
        while len(self._loaded) >= self._limit:
            _, evicted = self._loaded.popitem(last=False)
            evicted.close()
        loaded = self._load(model)
        self._loaded[model_id] = loaded
        return loaded

    @property
    def resident(self) -> tuple[str, ...]:
        """The ids of the models in memory, least recently used first."""
        return tuple(self._loaded)

    def close(self) -> None:
        while self._loaded:
            self._loaded.popitem()[1].close()
