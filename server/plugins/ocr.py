"""The `file-parser` plugin's `mistral-ocr` engine: a PDF read by Mistral's OCR API
(`[ocr]` in the config file), `POST {base_url}/ocr` with
`{"model", "document": {"type": "document_url", "document_url": "data:application/pdf;base64,…"}}`,
answered with `{"pages": [{"index", "markdown"}, …]}`; the pages' Markdown, in order,
is the file's text. Scanned pages, which pypdf reads as nothing, come back as text.
"""

from __future__ import annotations

from typing import Any

from server.errors import BadUpstream
from server.plugins.backend import Backend, BackendConfig

KINDS = ("mistral",)
DEFAULT_MODEL = "mistral-ocr-latest"


class Ocr:
    def __init__(self, config: BackendConfig) -> None:
        self._backend = Backend("ocr", config)

    async def text(self, pdf_base64: str) -> str:
        """The Markdown of each page of the PDF (base64), page after page."""
        config = self._backend.config
        body = {
            "model": config.model or DEFAULT_MODEL,
            "document": {
                "type": "document_url",
                "document_url": f"data:application/pdf;base64,{pdf_base64}",
            },
        }
        headers = {"authorization": f"Bearer {config.api_key}"} if config.api_key else None
        answer = await self._backend.call("POST", "/ocr", body=body, headers=headers)
        return "\n\n".join(p.strip() for p in _pages(answer) if p.strip())

    async def aclose(self) -> None:
        await self._backend.aclose()


def _pages(answer: Any) -> list[str]:
    """The pages' Markdown by `index`; a malformed answer is a 502."""
    try:
        pages = sorted(answer["pages"], key=lambda p: int(p.get("index", 0)))
        return [str(p["markdown"]) for p in pages]
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise BadUpstream(
            f"The file-parser plugin's OCR service answered in an unexpected shape ({error})."
        ) from None
