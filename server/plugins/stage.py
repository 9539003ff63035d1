"""The plugins' stage: the last before routing, it runs what the request's `plugins` ask.

Order: (the input-side plugins join here as they land), then `response-healing`
registers its finisher for the answer.
"""

from __future__ import annotations

from server.errors import UnsupportedParameter
from server.pipeline.context import RequestContext, UsageRecord
from server.plugins import healing
from server.plugins.requested import HEALING, requested

NOT_YET = frozenset({"web", "file-parser", "moderation", "auto-router"})


class PluginStage:
    async def before(self, ctx: RequestContext) -> None:
        wanted = requested(ctx.request)
        if not wanted:
            return
        for name in NOT_YET & wanted.keys():
            raise UnsupportedParameter(
                f"The plugin '{name}' is not supported by this tokenwire server yet.",
                param="plugins",
            )
        if HEALING in wanted and (healer := healing.healer(ctx.request)) is not None:
            ctx.finishers.append(healer)

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        pass
