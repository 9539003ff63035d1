"""Real HTTP servers on 127.0.0.1 standing in for internet upstreams in the plugin tests.

`Upstream` serves one aiohttp app on port 0 and keeps every request body it got;
`anthropic_messages` answers like Anthropic's streamed Messages API, reporting
cache reads and writes only when the request carries a `cache_control` block.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from pypdf import PdfReader

Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


class Upstream:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.url = ""

    def handle(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            self.raw.append(raw)
            self.headers.append(dict(request.headers))
            self.bodies.append(json.loads(raw) if raw else {})
            return await handler(request, self.bodies[-1])

        return serve


@asynccontextmanager
async def serving(routes: dict[str, Handler]) -> AsyncIterator[Upstream]:
    """An upstream answering each path of `routes`; `url` is its base."""
    upstream = Upstream()
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, upstream.handle(handler))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield upstream
    finally:
        await runner.cleanup()


def _sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def _has_cache_control(body: dict[str, Any]) -> bool:
    system = body.get("system")
    blocks = [*(system if isinstance(system, list) else [])]
    for message in body.get("messages", []):
        if isinstance(message["content"], list):
            blocks += message["content"]
    return any("cache_control" in b for b in blocks)


CACHE_READ, CACHE_WRITE, INPUT, OUTPUT = 1800, 200, 20, 3


async def anthropic_messages(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Anthropic's stream: a cache hit and write when `cache_control` reached it."""
    cached = _has_cache_control(body)
    usage = {
        "input_tokens": INPUT,
        "cache_read_input_tokens": CACHE_READ if cached else 0,
        "cache_creation_input_tokens": CACHE_WRITE if cached else 0,
        "output_tokens": 1,
    }
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": OUTPUT},
        },
        {"type": "message_stop"},
    ]
    return web.Response(body=_sse(events), content_type="text/event-stream")


FLAG_WORD = "forbidden"


async def openai_moderations(request: web.Request, body: dict[str, Any]) -> web.Response:
    """OpenAI's `/v1/moderations`: an input holding FLAG_WORD is flagged for violence."""
    if request.headers.get("authorization") != "Bearer mod-key":
        return web.json_response({"error": {"message": "bad key"}}, status=401)
    results = []
    for text in body["input"]:
        hit = FLAG_WORD in text
        categories = {"violence": hit, "harassment": hit and "!" in text, "sexual": False}
        results.append({"flagged": hit, "categories": categories})
    return web.json_response({"id": "modr-1", "model": body["model"], "results": results})


PAGES = [
    ("https://one.example/oslo", "Oslo - Wikipedia", "Oslo is the capital of Norway."),
    ("https://two.example/page", "Visit Oslo", "Things to do in Oslo."),
    ("https://three.example/", "Norway facts", "Norway has fjords."),
]


async def searxng(request: web.Request, body: dict[str, Any]) -> web.Response:
    """SearxNG's JSON API (`/search?q=…&format=json`)."""
    if request.query.get("format") != "json" or not request.query.get("q"):
        return web.json_response({"error": "bad query"}, status=400)
    results = [{"url": u, "title": t, "content": c, "engine": "x"} for u, t, c in PAGES]
    return web.json_response({"query": request.query["q"], "results": results})


async def brave(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Brave Search (`/res/v1/web/search?q=…&count=…`, key in X-Subscription-Token)."""
    if request.headers.get("x-subscription-token") != "brave-key":
        return web.json_response({"error": "unauthorized"}, status=401)
    count = int(request.query["count"])
    results = [{"url": u, "title": t, "description": c} for u, t, c in PAGES[:count]]
    return web.json_response({"type": "search", "web": {"results": results}})


async def tavily(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Tavily (`POST /search` with `query` and `max_results`, a bearer key)."""
    if request.headers.get("authorization") != "Bearer tvly-key":
        return web.json_response({"error": "unauthorized"}, status=401)
    pages = PAGES[: body["max_results"]]
    results = [{"url": u, "title": t, "content": c, "score": 0.9} for u, t, c in pages]
    return web.json_response({"query": body["query"], "results": results})


async def mistral_ocr(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Mistral's `/v1/ocr` for a PDF data URL: each page's text (read here with pypdf, as
    the service reads the scan) as Markdown, listed last page first: order is by `index`."""
    if request.headers.get("authorization") != "Bearer ocr-key":
        return web.json_response({"message": "Unauthorized"}, status=401)
    document = body.get("document") or {}
    prefix = "data:application/pdf;base64,"
    if document.get("type") != "document_url" or not document["document_url"].startswith(prefix):
        return web.json_response({"message": "bad document"}, status=422)
    reader = PdfReader(io.BytesIO(base64.b64decode(document["document_url"][len(prefix) :])))
    pages = [
        {"index": i, "markdown": f"## Page {i + 1}\n{page.extract_text().strip()}"}
        for i, page in enumerate(reader.pages)
    ]
    return web.json_response({"model": body["model"], "pages": pages[::-1], "usage_info": {}})
