"""The plugins' stage: the last before routing, it runs what the request's `plugins` ask.

Order: `moderation` checks the input as the client sent it; then `response-healing`
registers its finisher for the answer. A plugin whose service is not configured is a
400 naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from server.errors import InvalidRequest, UnsupportedParameter
from server.pipeline.context import RequestContext, UsageRecord
from server.plugins import healing
from server.plugins.backend import BackendConfig
from server.plugins.moderation import Moderator
from server.plugins.requested import HEALING, MODERATION, requested

NOT_YET = frozenset({"web", "file-parser", "auto-router"})


@dataclass(frozen=True, slots=True)
class PluginsConfig:
    """The services plugins call (None: not configured)."""

    moderation: BackendConfig | None = None


class PluginStage:
    def __init__(self, config: PluginsConfig | None = None) -> None:
        config = config or PluginsConfig()
        self._moderator = Moderator(config.moderation) if config.moderation else None

    async def before(self, ctx: RequestContext) -> None:
        wanted = requested(ctx.request)
        if not wanted:
            return
        for name in NOT_YET & wanted.keys():
            raise UnsupportedParameter(
                f"The plugin '{name}' is not supported by this tokenwire server yet.",
                param="plugins",
            )
        if MODERATION in wanted:
            await _needed(self._moderator, MODERATION).check(ctx)
        if HEALING in wanted and (healer := healing.healer(ctx.request)) is not None:
            ctx.finishers.append(healer)

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        pass

    async def aclose(self) -> None:
        if self._moderator is not None:
            await self._moderator.aclose()


T = TypeVar("T")


def _needed(service: T | None, plugin: str) -> T:
    if service is None:
        raise InvalidRequest(
            f"The plugin '{plugin}' needs a service this server has not configured "
            f"(the config file's [{plugin}] section).",
            param="plugins",
            code="plugin_not_configured",
        )
    return service
