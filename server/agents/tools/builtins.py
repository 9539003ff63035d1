"""The built-in tools that work offline: `current_time`, `memory_search`, `memory_store`
(`calculator` and `http_fetch` have their own modules)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.agents.tools.base import function, text_argument
from server.errors import ToolFailed
from server.memory.model import Scope
from server.memory.store import MemoryStore

SEARCH_RESULTS = 5


class CurrentTime:
    name = "current_time"
    definition = function(
        "current_time",
        "The current date and time (ISO 8601), in UTC or the given IANA time zone.",
        {"timezone": {"type": "string", "description": "e.g. Europe/Paris; default UTC"}},
        [],
    )

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock

    async def run(self, arguments: dict[str, Any]) -> str:
        zone = arguments.get("timezone") or "UTC"
        try:
            tz = ZoneInfo(str(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolFailed(f"unknown time zone {zone!r}") from None
        return datetime.datetime.fromtimestamp(self._clock(), tz).isoformat(timespec="seconds")


class MemorySearch:
    name = "memory_search"
    definition = function(
        "memory_search",
        "Search the organization's memory for facts relevant to a query.",
        {"query": {"type": "string", "description": "What to look for."}},
        ["query"],
    )

    def __init__(self, store: MemoryStore, scope: Scope) -> None:
        self._store, self._scope = store, scope

    async def run(self, arguments: dict[str, Any]) -> str:
        found = await self._store.search(
            self._scope, text_argument(arguments, "query"), SEARCH_RESULTS
        )
        return "\n".join(f"- {s.memory.content}" for s in found) or "No memories match."


class MemoryWrite:
    name = "memory_store"
    definition = function(
        "memory_store",
        "Remember a fact in the organization's memory for later requests.",
        {"content": {"type": "string", "description": "The fact, one sentence."}},
        ["content"],
    )

    def __init__(self, store: MemoryStore, scope: Scope) -> None:
        self._store, self._scope = store, scope

    async def run(self, arguments: dict[str, Any]) -> str:
        content = text_argument(arguments, "content")
        memory = await self._store.add(
            self._scope.organization_id, content, user=self._scope.user, source="api"
        )
        return f"Stored as memory {memory.id}."
