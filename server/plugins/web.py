"""The `web` plugin (also `model: "x:online"`): the last user message is searched for, the
top `max_results` (default 5, at most 20) go into the prompt as one delimited system
message just before that message, and the answer's `message.annotations` list each
result as a `url_citation`.

`search_prompt` replaces the sentence introducing the results. Each result is numbered
`[n]`; its citation's `start_index`/`end_index` are where the answer first writes `[n]`
or the result's URL, or 0 and 0 when it cites neither (the result was given, not quoted).
"""

from __future__ import annotations

from collections.abc import Sequence

from server.errors import InvalidRequest
from server.pipeline.context import RequestContext
from server.plugins.requested import ONLINE
from server.plugins.search import Result, Searcher
from tokenwire.chat.v1 import chat_pb2, message_pb2, routing_pb2

DEFAULT_RESULTS = 5
MAX_RESULTS = 20
INTRO = (
    "A web search was run for the user's last message. Use these results where they help "
    "and cite them by their number, as [1]."
)


async def search(ctx: RequestContext, plugin: routing_pb2.Plugin, searcher: Searcher) -> None:
    """Search, put the results in the prompt, and annotate the answer with them."""
    request = ctx.request
    request.model = request.model.removesuffix(ONLINE)
    count = _count(plugin)
    if plugin.HasField("engine") and plugin.engine != searcher.kind:
        raise InvalidRequest(
            f"The web plugin's engine here is '{searcher.kind}', not '{plugin.engine}'.",
            param="plugins",
        )
    at, query = _last_user(request.messages)
    if not query:
        return
    results = await searcher.search(query, count)
    if not results:
        return
    intro = plugin.search_prompt if plugin.HasField("search_prompt") else INTRO
    system = message_pb2.ChatMessage(
        role=message_pb2.ROLE_SYSTEM, content_text=prompt(intro, results)
    )
    request.messages.insert(at, system)
    ctx.finishers.append(Citations(results))


def _count(plugin: routing_pb2.Plugin) -> int:
    if not plugin.HasField("max_results"):
        return DEFAULT_RESULTS
    if not 1 <= plugin.max_results <= MAX_RESULTS:
        raise InvalidRequest(
            f"The web plugin's 'max_results' must be in [1, {MAX_RESULTS}].", param="plugins"
        )
    return plugin.max_results


def _last_user(messages: Sequence[message_pb2.ChatMessage]) -> tuple[int, str]:
    """Where the last user message is, and its text."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.role == message_pb2.ROLE_USER:
            parts = m.content_parts.parts
            text = m.content_text or " ".join(p.text for p in parts if p.HasField("text"))
            return i, text.strip()
    return len(messages), ""


def prompt(intro: str, results: Sequence[Result]) -> str:
    """The system message: the intro, then the results between delimiters."""
    lines = [intro, "", "<search_results>"]
    for n, r in enumerate(results, 1):
        lines += [f"[{n}] {r.title}", f"URL: {r.url}", r.content, ""]
    lines.append("</search_results>")
    return "\n".join(lines)


class Citations:
    """The results as `url_citation` annotations on each choice (a finisher)."""

    def __init__(self, results: Sequence[Result]) -> None:
        self._results = tuple(results)

    def annotations(self, text: str) -> list[chat_pb2.Annotation]:
        return [self._annotation(n, r, text) for n, r in enumerate(self._results, 1)]

    def _annotation(self, n: int, r: Result, text: str) -> chat_pb2.Annotation:
        start, end = _cited(text, f"[{n}]", r.url)
        citation = chat_pb2.UrlCitation(
            url=r.url, title=r.title, start_index=start, end_index=end, content=r.content
        )
        return chat_pb2.Annotation(
            type=chat_pb2.ANNOTATION_TYPE_URL_CITATION, url_citation=citation
        )

    def whole(self, choice: chat_pb2.Choice) -> None:
        choice.message.annotations.extend(self.annotations(choice.message.content))

    def last(self, choice: chat_pb2.ChunkChoice, message: chat_pb2.ResponseMessage) -> None:
        choice.delta.annotations.extend(self.annotations(message.content))


def _cited(text: str, marker: str, url: str) -> tuple[int, int]:
    """Where `text` first cites the result (its marker or its URL); (0, 0) if nowhere."""
    found = [(i, i + len(s)) for s in (marker, url) if (i := text.find(s)) >= 0]
    return min(found) if found else (0, 0)
