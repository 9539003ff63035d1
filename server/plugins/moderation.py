"""The `moderation` plugin: the input checked by an OpenAI-compatible `/v1/moderations`
endpoint (`[moderation]` in the config file) before any model is called.

Flagged input is a 403 with code `content_flagged`; no model is called and nothing
is billed. Every message but the assistant's is checked. The refusal carries what
OpenRouter documents for moderation errors as the error object's `metadata`:
`reasons` (the flagged categories), `flagged_input` (the first flagged text, at most
100 characters, cut in the middle) and `model_slug` (the model asked for); over gRPC
that is a `google.protobuf.Struct` status detail, beside the ErrorInfo whose
metadata `categories` lists the reasons comma-separated. No `provider_name`: no
provider has been chosen when moderation runs.
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
        flagged, first = _flagged(answer)
        if flagged:
            raise ContentFlagged(
                f"The input was flagged by moderation: {', '.join(flagged)}.",
                metadata={"categories": ",".join(flagged)},
                details={
                    "reasons": flagged,
                    "flagged_input": shortened(texts[first] if first < len(texts) else ""),
                    "model_slug": shortened(ctx.request.model, MODEL_SLUG_CHARS),
                },
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


FLAGGED_INPUT_CHARS = 100  # OpenRouter's bound on `flagged_input`
# What else a refusal repeats is bounded too: it travels in a gRPC trailer, whose size
# is limited, and the service's category names are not ours.
MODEL_SLUG_CHARS = 256
MAX_REASONS, REASON_CHARS = 32, 64


def shortened(text: str, most: int = FLAGGED_INPUT_CHARS) -> str:
    """`text` within `most` characters, its middle replaced by `...` when longer."""
    if len(text) <= most:
        return text
    head = (most - 3 + 1) // 2
    return f"{text[:head]}...{text[len(text) - (most - 3 - head) :]}"


def _flagged(answer: Any) -> tuple[list[str], int]:
    """The categories flagged in any result, sorted, and the index of the first flagged
    input (the results follow the inputs); a malformed answer is a 502."""
    try:
        results = answer["results"]
        hits = [i for i, r in enumerate(results) if r["flagged"]]
        flagged = {
            name for i in hits for name, on in (results[i].get("categories") or {}).items() if on
        }
        if hits and not flagged:
            flagged = {"unspecified"}
    except (TypeError, KeyError, AttributeError) as error:
        raise BadUpstream(
            f"The moderation plugin's service answered in an unexpected shape ({error})."
        ) from None
    reasons = sorted({str(name)[:REASON_CHARS] for name in flagged})[:MAX_REASONS]
    return reasons, hits[0] if hits else 0
