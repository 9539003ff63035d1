"""Which provider serves which model id."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from server.errors import InvalidRequest, NotFound
from server.providers.base import ModelCard, Provider


@dataclass(frozen=True, slots=True)
class Target:
    """A model as a provider serves it."""

    provider: Provider
    card: ModelCard


class Registry:
    """Model ids to providers. A model is addressed as `id` or `provider/id`."""

    def __init__(self, providers: Sequence[Provider], default_model: str | None = None) -> None:
        self.providers = tuple(providers)
        self._targets: dict[str, Target] = {}
        now = int(time.time())
        for p in self.providers:
            for card in p.models():
                card = card if card.created else replace(card, created=now)
                self._targets.setdefault(card.id, Target(p, card))
                self._targets[f"{p.name}/{card.id}"] = Target(p, card)
        first = next(iter(self._targets), None)
        self.default_model = default_model or first

    def cards(self) -> list[tuple[str, Target]]:
        """Each model once, under its plain id."""
        return [(k, t) for k, t in self._targets.items() if k == t.card.id]

    def resolve(self, model: str) -> Target:
        name = model or self.default_model
        if not name:
            raise InvalidRequest("No model was given and no default is configured.", param="model")
        target = self._targets.get(name)
        if target is None:
            raise NotFound(
                f"The model '{name}' does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return target
