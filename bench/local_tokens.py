"""Generation speed of `LocalProvider.stream` against llama-cpp-python called directly,
for both bundled models; first-token latency of a conversation's fifth turn with and
without the prefix cache; resident memory with one and with two models loaded.

Same GGUF, same prompt tokens, greedy, the same number of tokens per run;
prints Markdown tables of medians plus model load time and memory.

    .venv/bin/python bench/local_tokens.py [--tokens 128] [--runs 5] [--turns 5]

The direct baselines use their own `Llama` on the same file. Runs take turns
(direct, direct, provider, …) so that other load on the machine hits every
path alike; nothing runs concurrently, so they never compete for the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import Llama

from server.providers.base import GenerationRequest, Message, Usage
from server.providers.llama import models as llama_models
from server.providers.llama.models import DEFAULT_MODELS, GEMMA3, SMOLLM2, LocalModel
from server.providers.llama.prompt import ChatPrompter
from server.providers.llama.provider import LocalConfig, LocalProvider
from server.providers.llama.vocab import Vocab
from server.runtime.cpus import physical_cores

USER = "Write a story about a cat."
# Greedy with llama.cpp's extra filters off: what the provider asks for at temperature 0.
GREEDY: dict[str, Any] = {
    "temp": 0.0,
    "top_k": 0,
    "top_p": 1.0,
    "min_p": 0.0,
    "repeat_penalty": 1.0,
}


@dataclass(frozen=True)
class Run:
    seconds: float
    tokens: int
    first_token: float  # seconds until the first token arrived


@dataclass(frozen=True)
class Row:
    name: str
    runs: list[Run]

    def cells(self, baseline: float) -> list[str]:
        rate = self.rate
        return [
            self.name,
            f"{statistics.median(r.tokens for r in self.runs):.0f}",
            f"{rate:.1f}",
            f"{statistics.median(r.first_token for r in self.runs) * 1000:.1f}",
            f"{rate / baseline:.3f}",
        ]

    @property
    def rate(self) -> float:
        return statistics.median(r.tokens / r.seconds for r in self.runs)


def rss_mb() -> tuple[float, float]:
    """Current and peak resident memory of this process, in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def timed(tokens: Iterator[Any]) -> Run:
    started = time.perf_counter()
    first, count = 0.0, 0
    for _ in tokens:
        count += 1
        first = first or time.perf_counter() - started
    return Run(time.perf_counter() - started, count, first)


def direct_generate(llm: Llama, prompt: list[int], limit: int) -> Iterator[int]:
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    for n, token in enumerate(llm.generate(prompt, **GREEDY), start=1):
        yield token
        if llama_cpp.llama_vocab_is_eog(vocab, token) or n == limit:
            return


def direct_completion(llm: Llama, prompt: list[int], limit: int) -> Iterator[Any]:
    chunks: Any = llm.create_completion(
        prompt=prompt, max_tokens=limit, stream=True, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0
    )
    # The last chunk only carries the finish reason; it is no token.
    return (c for c in chunks if c["choices"][0]["finish_reason"] is None)


def open_direct(path: Path) -> tuple[Llama, float]:
    started = time.perf_counter()
    # The same threads the provider takes by default, so the comparison is like for like.
    llm = Llama(
        model_path=str(path),
        n_ctx=4096,
        n_threads=physical_cores(),
        verbose=False,
        last_n_tokens_size=4096,
    )
    return llm, time.perf_counter() - started


async def provider_run(
    provider: LocalProvider, model: str, limit: int, messages: tuple[Message, ...] | None = None
) -> Run:
    request = GenerationRequest(
        model=model,
        messages=messages or (Message(role="user", content=USER),),
        temperature=0.0,
        max_tokens=limit,
    )
    started = time.perf_counter()
    first, usage = 0.0, None
    async for event in provider.stream(request):
        if isinstance(event, Usage):
            usage = event
        elif event.content:
            first = first or time.perf_counter() - started
    assert usage is not None
    return Run(time.perf_counter() - started, usage.completion_tokens, first)


async def measure(model: LocalModel, args: argparse.Namespace) -> None:
    """Tokens/s through the provider and directly, for one model."""
    started = time.perf_counter()
    provider = await LocalProvider.load(LocalConfig(models=(model,)))
    await provider_run(provider, model.id, 1)  # models load on first use
    provider_load, provider_rss = time.perf_counter() - started, rss_mb()[0]
    path = llama_models.locate(model, print)
    llm, direct_load = open_direct(path)
    prompt = ChatPrompter(llm, Vocab(llm)).tokens((Message(role="user", content=USER),))
    ways: dict[str, Callable[[], Awaitable[Run]]] = {
        "llama-cpp-python Llama.generate": lambda: _now(direct_generate, llm, prompt, args.tokens),
        "llama-cpp-python create_completion(stream)": lambda: _now(
            direct_completion, llm, prompt, args.tokens
        ),
        "tokenwire LocalProvider.stream": lambda: provider_run(provider, model.id, args.tokens),
    }
    try:
        rows = await interleaved(ways, args.runs)
    finally:
        llm.close()
        await provider.aclose()
    print(f"\n## {model.id}")
    print_table(rows, args)
    print(f"\nload: LocalProvider {provider_load:.2f} s, direct Llama {direct_load:.2f} s")
    print(f"RSS with the provider loaded: {provider_rss:.0f} MB")


async def fifth_turn(prefix_cache: int, args: argparse.Namespace) -> list[float]:
    """First-token seconds of turn `args.turns` of a conversation, another one taking turns
    with it (so only the kept KV states, not the last request's cache, can help)."""
    provider = await LocalProvider.load(LocalConfig(prefix_cache=prefix_cache))
    firsts = []
    try:
        for run in range(args.runs):
            talks: list[list[Message]] = [[], []]
            for n in range(args.turns):
                for k, history in enumerate(talks):
                    history.append(Message("user", f"Tell me fact {n} about topic {k}, run {run}."))
                    result = await provider_run(provider, SMOLLM2, 24, tuple(history))
                    history.append(Message("assistant", "Here is one fact about it. " * 3))
                    if k == 0 and n == args.turns - 1:
                        firsts.append(result.first_token)
    finally:
        await provider.aclose()
    return firsts


async def memory() -> tuple[float, float, float]:
    """RSS in MB: no model loaded, one, both (max_resident_models = 2)."""
    provider = await LocalProvider.load(LocalConfig(max_resident=2))
    try:
        empty = rss_mb()[0]
        await provider_run(provider, SMOLLM2, 1)
        one = rss_mb()[0]
        await provider_run(provider, GEMMA3, 1)
        return empty, one, rss_mb()[0]
    finally:
        await provider.aclose()


async def measure_all(args: argparse.Namespace) -> None:
    empty, one, two = await memory()
    for model in DEFAULT_MODELS:
        await measure(model, args)
    cached = await fifth_turn(64 << 20, args)
    afresh = await fifth_turn(0, args)
    print(f"\n## first token of turn {args.turns} ({SMOLLM2}, two conversations taking turns)\n")
    print("| prefix cache | first token ms (median) |\n|---|---|")
    print(f"| on (64 MiB) | {statistics.median(cached) * 1000:.0f} |")
    print(f"| off | {statistics.median(afresh) * 1000:.0f} |")
    print(f"\nRSS: no model {empty:.0f} MB, {SMOLLM2} {one:.0f} MB, both {two:.0f} MB")


async def _now(
    way: Callable[[Llama, list[int], int], Iterator[Any]], llm: Llama, prompt: list[int], n: int
) -> Run:
    return timed(way(llm, prompt, n))


async def interleaved(ways: dict[str, Callable[[], Awaitable[Run]]], runs: int) -> list[Row]:
    """One warm-up each, then rounds taking turns, so load on the machine hits all alike."""
    for way in ways.values():
        await way()
    results: dict[str, list[Run]] = {name: [] for name in ways}
    for _ in range(runs):
        for name, way in ways.items():
            results[name].append(await way())
    return [Row(name, found) for name, found in results.items()]


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    baseline = rows[0].rate
    header = ["path", "tokens/run", "tokens/s (median)", "first token ms (median)", "ratio"]
    print(f"\n{args.runs} runs of {args.tokens} greedy tokens, prompt: {USER!r}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row.cells(baseline)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--turns", type=int, default=5)
    asyncio.run(measure_all(parser.parse_args()))


if __name__ == "__main__":
    main()
