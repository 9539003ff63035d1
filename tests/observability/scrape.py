"""Scraping `/metrics` and reading samples with prometheus-client's own parser."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.conftest import user_turn


async def scrape(http_port: int) -> list[Sample]:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"http://127.0.0.1:{http_port}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return [s for f in text_string_to_metric_families(answer.text) for s in f.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
    return sum(s.value for s in samples if s.name == name and _has(s.labels, labels))


def _has(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


async def whole_and_streamed(client: openai.AsyncOpenAI, model: str = "fake-echo") -> None:
    """One whole answer, and one stream read to its end."""
    await client.chat.completions.create(model=model, messages=user_turn("hi"))
    stream = await client.chat.completions.create(
        model=model, messages=user_turn("hi"), stream=True
    )
    async for _ in stream:
        pass
