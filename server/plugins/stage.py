"""The plugins' stage: the last before routing, it runs what the request's `plugins` ask.

Order: `file-parser` turns PDFs into text (pypdf, or the OCR service); `moderation`
checks the input; `web` adds search results to the prompt (and citations to the
answer); `auto-router` (or `model: "auto"`) picks the model for the prompt as it now
is; `response-healing` registers its finisher for the answer. A plugin (or engine)
whose service is not configured is a 400 naming it and saying it is not available.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from server.errors import InvalidRequest
from server.pipeline.context import RequestContext, UsageRecord
from server.plugins import auto_router, files, healing, web
from server.plugins.backend import BackendConfig
from server.plugins.moderation import Moderator
from server.plugins.ocr import Ocr
from server.plugins.requested import (
    AUTO_ROUTER,
    FILE_PARSER,
    HEALING,
    MODERATION,
    WEB,
    requested,
)
from server.plugins.search import Searcher
from server.routing.catalog import Catalog
from server.routing.stats import Stats


@dataclass(frozen=True, slots=True)
class PluginsConfig:
    """The services plugins call (None: not configured)."""

    moderation: BackendConfig | None = None
    search: BackendConfig | None = None  # the web plugin's
    ocr: BackendConfig | None = None  # the file-parser plugin's `mistral-ocr` engine


class PluginStage:
    def __init__(
        self,
        config: PluginsConfig | None = None,
        catalog: Catalog | None = None,
        stats: Stats | None = None,
    ) -> None:
        config = config or PluginsConfig()
        self._catalog = catalog or Catalog(())
        self._stats = stats or Stats()
        self._moderator = Moderator(config.moderation) if config.moderation else None
        self._searcher = Searcher(config.search) if config.search else None
        self._ocr = Ocr(config.ocr) if config.ocr else None

    async def before(self, ctx: RequestContext) -> None:
        wanted = requested(ctx.request)
        if FILE_PARSER in wanted:
            await self._parse_files(ctx, files.engine(wanted[FILE_PARSER]))
        if MODERATION in wanted:
            await _needed(self._moderator, "moderation", "The plugin 'moderation'").check(ctx)
        if WEB in wanted:
            await web.search(
                ctx, wanted[WEB], _needed(self._searcher, "search", "The plugin 'web'")
            )
        if AUTO_ROUTER in wanted or ctx.request.model == auto_router.AUTO:
            plugin = wanted.get(AUTO_ROUTER)
            ctx.request.model = auto_router.choose(ctx, plugin, self._catalog, self._stats)
        if HEALING in wanted and (healer := healing.healer(ctx.request)) is not None:
            ctx.finishers.append(healer)

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        pass

    async def _parse_files(self, ctx: RequestContext, engine: str) -> None:
        if engine == "pdf-text":
            await files.parse_files(list(ctx.request.messages))
        elif engine == "mistral-ocr":
            ocr = _needed(self._ocr, "ocr", "The file-parser plugin's 'mistral-ocr' engine")
            await files.parse_files(list(ctx.request.messages), files.read_with(ocr))

    async def aclose(self) -> None:
        for service in (self._moderator, self._searcher, self._ocr):
            if service is not None:
                await service.aclose()


T = TypeVar("T")


def _needed(service: T | None, section: str, what: str) -> T:
    if service is None:
        raise InvalidRequest(
            f"{what} is not available on this server: it needs a service this server has "
            f"not configured (the config file's [{section}] section).",
            param="plugins",
            code="plugin_not_configured",
        )
    return service
