"""Web search backends for the `web` plugin, one API shape each (`[search]` `kind`).

- `searxng`: SearxNG's JSON API, `GET {base_url}/search?q=…&format=json`;
- `brave`: Brave Search, `GET {base_url}/res/v1/web/search?q=…&count=…` with
  `X-Subscription-Token`;
- `tavily`: Tavily, `POST {base_url}/search` `{"query", "max_results"}` with a bearer key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.errors import BadUpstream
from server.plugins.backend import Backend, BackendConfig

KINDS = ("searxng", "brave", "tavily")


@dataclass(frozen=True, slots=True)
class Result:
    url: str
    title: str
    content: str


class Searcher:
    def __init__(self, config: BackendConfig) -> None:
        self._backend = Backend("web", config)

    @property
    def kind(self) -> str:
        return self._backend.config.kind

    async def search(self, query: str, count: int) -> list[Result]:
        """The top `count` results for `query`."""
        raw = await self._call(query, count)
        try:
            return [r for r in map(_result, _items(self.kind, raw)) if r.url][:count]
        except (TypeError, KeyError, AttributeError) as error:
            raise BadUpstream(
                f"The web plugin's search service answered in an unexpected shape ({error})."
            ) from None

    async def _call(self, query: str, count: int) -> Any:
        key = self._backend.config.api_key
        if self.kind == "brave":
            params = {"q": query, "count": str(count)}
            headers = {"x-subscription-token": key} if key else None
            return await self._backend.call(
                "GET", "/res/v1/web/search", params=params, headers=headers
            )
        if self.kind == "tavily":
            body = {"query": query, "max_results": count}
            headers = {"authorization": f"Bearer {key}"} if key else None
            return await self._backend.call("POST", "/search", body=body, headers=headers)
        params = {"q": query, "format": "json"}
        return await self._backend.call("GET", "/search", params=params)

    async def aclose(self) -> None:
        await self._backend.aclose()


def _items(kind: str, raw: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = raw["web"]["results"] if kind == "brave" else raw["results"]
    return items


def _result(item: dict[str, Any]) -> Result:
    snippet = item.get("content") or item.get("description") or ""
    return Result(str(item.get("url") or ""), str(item.get("title") or ""), str(snippet))
