"""Retries never duplicate a generation: the official SDK → tokenwire → real upstreams.

The same endpoint gets a request again only when it provably did not process
it (refused the connection, or answered 503 / 429); an upstream that read the
request and then broke off, or answered 200 with a broken body, is not sent it
twice, though the next candidate may serve it. Every attempt is in the usage
record, with its tokens where known.
"""

from __future__ import annotations

from typing import Any

import pytest

from server.runtime import app
from tests.conftest import StartService, sdk
from tests.routing.test_fallback import OK, USER, chain, last, nothing_listening
from tests.routing.upstream_server import Reply, chunk, openai_error, openai_text
from tests.routing.upstream_server import upstreams as serving

RETRY: dict[str, Any] = {
    "retries": 1,
    "retry_base_delay": 0.01,
}  # tokenwire's default: one more try


async def answer(service: app.Service, stream: bool) -> tuple[str, str | None]:
    """The text of one call, streamed or not, and the provider that served it."""
    async with sdk(service) as client:
        if stream:
            chunks = await client.chat.completions.create(model="m", messages=USER, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        else:
            completion = await client.chat.completions.create(model="m", messages=USER)
            text = completion.choices[0].message.content or ""
    return text, (await last(service)).provider


async def tries(service: app.Service) -> list[tuple[Any, ...]]:
    """The last request's attempts: provider, outcome, error code, tokens."""
    return [
        (a.provider, a.outcome, a.error, a.prompt_tokens, a.completion_tokens)
        for a in (await last(service)).attempts
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_a_post_read_in_full_then_dropped_is_not_sent_to_that_upstream_again(
    start_service: StartService, stream: bool
) -> None:
    async with serving(OK, OK) as (a, b):
        a.script(OK, Reply(drop_at=0))  # the second request is read whole, then the reset
        service = await chain(start_service, a.url, b.url, **RETRY)
        assert await answer(service, stream=False) == ("hi there", "p0")
        assert await answer(service, stream) == ("hi there", "p1")  # the next candidate's
    assert a.connections == 1  # the first call left its connection for the second
    assert len(a.requests) == 2  # one POST per call: p0 never saw the second one twice
    failed, ok = await tries(service)
    assert failed[:2] == ("p0", "error") and failed[2] in ("bad_upstream", "provider_unavailable")
    assert ok == ("p1", "ok", None, 3, 2)


BROKEN = {
    "garbage body": (Reply(body=b'{"choices": [{"message": '), False),
    "truncated body": (Reply(events=openai_text("hi ", "there"), drop_at=1), False),
    "garbage event": (Reply(events=[chunk({"content": "x"})[:20] + b"\n\n"]), True),
}


@pytest.mark.parametrize(("reply", "stream"), BROKEN.values(), ids=BROKEN.keys())
async def test_a_200_with_a_broken_body_moves_on_without_a_second_post(
    start_service: StartService, reply: Reply, stream: bool
) -> None:
    async with serving(reply, OK) as (a, b):
        service = await chain(start_service, a.url, b.url, **RETRY)
        assert await answer(service, stream) == ("hi there", "p1")
    assert len(a.requests) == 1
    assert await tries(service) == [
        ("p0", "error", "bad_upstream", 0, 0),
        ("p1", "ok", None, 3, 2),
    ]


async def test_a_refused_connection_and_a_503_are_sent_again(start_service: StartService) -> None:
    async with serving(OK, OK) as (a, b):
        service = await chain(start_service, nothing_listening(), b.url, **RETRY)
        assert await answer(service, stream=False) == ("hi there", "p1")
        assert await tries(service) == [
            ("p0", "error", "provider_unavailable", 0, 0),
            ("p0", "error", "provider_unavailable", 0, 0),
            ("p1", "ok", None, 3, 2),
        ]
        a.script(openai_error(503, "busy"))
        service = await chain(start_service, a.url, b.url, **RETRY)
        assert await answer(service, stream=False) == ("hi there", "p0")
        assert len(a.requests) == 2
        assert await tries(service) == [
            ("p0", "error", "provider_unavailable", 0, 0),
            ("p0", "ok", None, 3, 2),
        ]
