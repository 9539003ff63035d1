"""The model catalog: which endpoints (provider + upstream model) serve each model id.

A model id may be served by several providers (OpenRouter's endpoints); the
configured order is the default routing order. Aliases name the same model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from server.errors import InvalidRequest, NotFound
from server.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One provider serving one model, with what routing filters and sorts on."""

    model: str  # the public model id
    provider: Provider
    upstream_model: str  # the id the provider knows it by
    context_length: int | None = None
    prompt_price: float = 0.0  # USD per million prompt tokens
    completion_price: float = 0.0  # USD per million completion tokens
    # USD per million prompt tokens read from / written to the provider's cache; unset means
    # they cost the prompt price.
    cached_price: float | None = None
    cache_write_price: float | None = None
    quantization: str | None = None
    data_collection: str = "deny"  # allow: the provider may keep and train on data
    zdr: bool = False  # zero data retention
    created: int = 0
    owned_by: str = "tokenwire"
    aliases: tuple[str, ...] = field(default=())
    # The provider's name, read once here: routing asks for it several times per request.
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.provider.name)  # frozen: made once, at start

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached: int = 0, written: int = 0
    ) -> float:
        """USD for a request of this size; `cached` and `written` (cache reads and writes) are
        among the prompt tokens, at their own prices when configured."""
        cached_price = self.prompt_price if self.cached_price is None else self.cached_price
        write_price = (
            self.prompt_price if self.cache_write_price is None else self.cache_write_price
        )
        uncached = max(prompt_tokens - cached - written, 0)
        prompt = uncached * self.prompt_price + cached * cached_price + written * write_price
        return (prompt + completion_tokens * self.completion_price) / 1e6


class Catalog:
    def __init__(self, endpoints: Iterable[Endpoint], default_model: str | None = None) -> None:
        self._models: dict[str, list[Endpoint]] = {}
        self._aliases: dict[str, str] = {}
        for e in endpoints:
            self._models.setdefault(e.model, []).append(e)
            for alias in e.aliases:
                self._aliases.setdefault(alias, e.model)
        self.default_model = default_model or next(iter(self._models), None)

    def models(self) -> list[tuple[str, Sequence[Endpoint]]]:
        return list(self._models.items())

    def aliases_of(self, model: str) -> list[str]:
        return [a for a, m in self._aliases.items() if m == model]

    def canonical(self, model: str) -> str:
        """The model id behind an id, an alias or `provider/id`; 404 when unknown."""
        name = model or self.default_model
        if not name:
            raise InvalidRequest("No model was given and no default is configured.", param="model")
        name = self._aliases.get(name, name)
        if name in self._models:
            return name
        provider, _, rest = name.partition("/")
        if rest in self._models and any(e.name == provider for e in self._models[rest]):
            return name
        raise NotFound(
            f"The model '{name}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )

    def endpoints(self, model: str) -> list[Endpoint]:
        """Endpoints serving `model` in configured order (`provider/id` pins one provider)."""
        name = self.canonical(model)
        if name in self._models:
            return list(self._models[name])
        provider, _, rest = name.partition("/")
        return [e for e in self._models[rest] if e.name == provider]
