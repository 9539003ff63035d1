"""The `moderation` plugin: the input checked by an OpenAI-compatible `/v1/moderations`
endpoint (`[moderation]` in the config file) before any model is called.

Flagged input is a 403 with code `content_flagged`, the categories named in its
message (and in the gRPC status's ErrorInfo metadata, `categories`); no model is
called and nothing is billed. Every message but the assistant's is checked.
"""

from __future__ import annotations

from typing import Any

from server.errors import BadUpstream, PermissionDenied
from server.pipeline.context import RequestContext
from server.plugins.backend import Backend, BackendConfig
from tokenwire.chat.v1 import message_pb2

DEFAULT_MODEL = "omni-moderation-latest"


class ContentFlagged(PermissionDenied):
    code = "content_flagged"


class Moderator:
    def __init__(self, config: BackendConfig) -> None:
        self._backend = Backend("moderation", config)

    async def check(self, ctx: RequestContext) -> None:
        texts = _inputs(ctx.request.messages)
        if not texts:
            return
        config = self._backend.config
        body = {"model": config.model or DEFAULT_MODEL, "input": texts}
        headers = {"authorization": f"Bearer {config.api_key}"} if config.api_key else None
        answer = await self._backend.call("POST", "/moderations", body=body, headers=headers)
        flagged = _flagged(answer)
        if flagged:
            names = ", ".join(flagged)
            raise ContentFlagged(
                f"The input was flagged by moderation: {names}.",
                metadata={"categories": ",".join(flagged)},
            )

    async def aclose(self) -> None:
        await self._backend.aclose()


def _inputs(messages: Any) -> list[str]:
    texts = []
    for m in messages:
        if m.role == message_pb2.ROLE_ASSISTANT:
            continue
        if m.HasField("content_text"):
            texts.append(m.content_text)
        else:
            texts += [p.text for p in m.content_parts.parts if p.HasField("text")]
    return [t for t in texts if t]


def _flagged(answer: Any) -> list[str]:
    """The categories flagged in any result, sorted; a malformed answer is a 502."""
    try:
        results = answer["results"]
        flagged = {
            name
            for r in results
            if r["flagged"]
            for name, on in (r.get("categories") or {}).items()
            if on
        }
        if any(r["flagged"] for r in results) and not flagged:
            flagged = {"unspecified"}
    except (TypeError, KeyError) as error:
        raise BadUpstream(
            f"The moderation plugin's service answered in an unexpected shape ({error})."
        ) from None
    return sorted(flagged)
