"""Which plugins one request asks for, by id."""

from __future__ import annotations

from server.errors import InvalidRequest
from tokenwire.chat.v1 import chat_pb2, routing_pb2

HEALING = "response-healing"
WEB = "web"
FILE_PARSER = "file-parser"
MODERATION = "moderation"
AUTO_ROUTER = "auto-router"
IDS = (AUTO_ROUTER, MODERATION, WEB, FILE_PARSER, HEALING)

# `model: "x:online"` asks for the web plugin, as on OpenRouter.
ONLINE = ":online"


def requested(request: chat_pb2.CreateChatCompletionRequest) -> dict[str, routing_pb2.Plugin]:
    """The enabled plugins by id (a later entry for an id replaces an earlier one)."""
    wanted: dict[str, routing_pb2.Plugin] = {}
    for i, plugin in enumerate(request.plugins):
        if plugin.id not in IDS:
            raise InvalidRequest(
                f"Unknown plugin '{plugin.id}'; known plugins: {', '.join(IDS)}.",
                param=f"plugins[{i}].id",
            )
        if plugin.HasField("enabled") and not plugin.enabled:
            wanted.pop(plugin.id, None)
        else:
            wanted[plugin.id] = plugin
    if request.model.endswith(ONLINE):
        wanted.setdefault(WEB, routing_pb2.Plugin(id=WEB))
    return wanted
