"""The HTTP service a plugin calls (a moderation endpoint, a search API): one pooled
aiohttp session, JSON in and out, its failures translated once into `ProviderError`s."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.errors import ProviderError, UpstreamTimeout

if TYPE_CHECKING:
    import aiohttp

MAX_RESPONSE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """Where a plugin's service is; the key is read from the environment at the edge."""

    # Which API shape: openai (moderation); searxng, brave or tavily (search); mistral (ocr).
    kind: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None  # moderation model, when the API takes one
    timeout: float = 10.0  # seconds for one whole call


class Backend:
    def __init__(self, name: str, config: BackendConfig) -> None:
        self.name = name  # the plugin, for error messages
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The JSON answer of one call; a failure is a 503 (504 on timeout) naming the plugin."""
        # Imported on first call: the config imports this module for `BackendConfig`, and
        # the --workers supervisor, which imports the config, would carry aiohttp (~10 MiB).
        import aiohttp

        from server.providers.http.session import new_session

        if self._session is None:  # made inside the running loop, as aiohttp wants
            self._session = new_session(pool_size=64)
        url = self.config.base_url.rstrip("/") + path
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        try:
            async with self._session.request(
                method, url, json=body, params=params, headers=headers, timeout=timeout
            ) as response:
                raw = await response.content.read(MAX_RESPONSE_BYTES)
                if response.status >= 400:
                    raise self._failed(f"it answered HTTP {response.status}")
                return json.loads(raw)
        except TimeoutError:
            raise UpstreamTimeout(f"The {self.name} plugin's service timed out.") from None
        except (aiohttp.ClientError, ValueError) as error:
            raise self._failed(str(error) or type(error).__name__) from None

    def _failed(self, why: str) -> ProviderError:
        return ProviderError(
            f"The {self.name} plugin's service failed: {why}.", code=f"{self.name}_unavailable"
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
