"""Routes the process running the gateway adds by path (`GET /metrics`, `/healthz`,
`/readyz`), answered by functions it hands in at start: the gateway serves them without
importing anything of the server's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from gateway.http import RawHeaders, Send


class LocalAnswer(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def body(self) -> bytes: ...

    @property
    def content_type(self) -> str: ...


LocalRoute = Callable[[], Awaitable[LocalAnswer]]


async def send_answer(send: Send, answer: LocalAnswer, headers: RawHeaders) -> None:
    head = [
        (b"content-type", answer.content_type.encode("latin-1")),
        (b"content-length", str(len(answer.body)).encode()),
        (b"cache-control", b"no-store"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": head})
    await send({"type": "http.response.body", "body": answer.body})
