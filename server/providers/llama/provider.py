"""The `local` provider: GGUF models run in-process by llama.cpp.

By default it serves the bundled SmolLM2-135M-Instruct (the default model) and
Gemma 3 270M (`models`); a config may declare other GGUF files instead.
Models load on first use and at most `max_resident` stay in memory
(`resident`).

The models live on one dedicated worker thread (`engine.Engine`) and
never run on the event loop. Requests take turns on it through a FIFO
`asyncio.Lock`, whichever model they ask for (two cores run one model at a
time well, two at once badly); tokens cross from the worker to the loop
through `loop.call_soon_threadsafe` into a per-request queue. Closing a stream
early sets the request's cancel flag, which the worker checks once per token,
and the lock is handed to the next request as soon as the worker has stopped.

llama-cpp-python is an optional dependency (`tokenwire[local]`), so it is
imported only when a model is loaded.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.errors import ProviderError, TokenwireError
from server.providers.base import Event, GenerationRequest, ModelCard
from server.providers.llama import models as llama_models
from server.providers.llama.models import DEFAULT_MODELS, LocalModel
from server.providers.llama.resident import Residents
from server.runtime.cpus import physical_cores

if TYPE_CHECKING:
    from server.providers.llama.engine import Engine

SUPPORTED = frozenset(
    {
        "temperature",
        "top_p",
        "max_completion_tokens",
        "stop",
        "seed",
        "n",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    }
)


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """Which models to serve and how to run them."""

    models: tuple[LocalModel, ...] = DEFAULT_MODELS  # the first is the default model
    max_resident: int = 1  # models kept loaded at once; the least recently used goes first
    n_threads: int | None = None  # None: one per physical core we may run on
    # Bytes of KV states kept per loaded model so a conversation's next turn skips its
    # history (`prefix_cache`); 0: every prompt is evaluated afresh.
    prefix_cache: int = 64 << 20
    verbose: bool = False  # llama.cpp's own logging


class LocalProvider:
    """Serves GGUF models; build it with `await LocalProvider.load(config)`."""

    def __init__(self, config: LocalConfig, executor: ThreadPoolExecutor) -> None:
        self._config = config
        # Touched only on the worker thread, the one thread of `executor`.
        self._engines: Residents[Engine] = Residents(
            config.models, config.max_resident, lambda model: _open_engine(model, config)
        )
        self._executor = executor
        self._turn = asyncio.Lock()  # FIFO: queued requests run in arrival order
        self._active: _Channel | None = None
        self._closed = False

    @classmethod
    async def load(cls, config: LocalConfig | None = None) -> LocalProvider:
        """Check every model's file is there; each loads on its first request."""
        config = config or LocalConfig()
        for model in config.models:
            llama_models.check(model)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenwire-llama")
        return cls(config, executor)

    @property
    def name(self) -> str:
        return "local"

    @property
    def supported(self) -> frozenset[str]:
        return SUPPORTED

    def models(self) -> tuple[ModelCard, ...]:
        return tuple(
            ModelCard(id=m.id, owned_by="local", context_length=m.n_ctx, aliases=m.aliases)
            for m in self._config.models
        )

    async def resident(self) -> tuple[str, ...]:
        """The ids of the models in memory now, least recently used first."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self._engines.resident)

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Event, None]:
        """Deltas as tokens are generated, then one `Usage`."""
        channel = await self._start(request)
        try:
            async for event in channel:
                yield event
        finally:
            channel.cancel()  # no-op when the worker already finished

    async def aclose(self) -> None:
        """Stop the running generation, free the model and end the worker thread."""
        if self._closed:
            return
        self._closed = True
        if self._active is not None:
            self._active.cancel()
        async with self._turn:  # queued requests go first and see `_closed`
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._engines.close)
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def _start(self, request: GenerationRequest) -> _Channel:
        """Wait for the model, then start `request` on the worker thread."""
        await self._turn.acquire()
        try:
            if self._closed:
                raise ProviderError("the local provider is closed")
            loop = asyncio.get_running_loop()
            channel = _Channel(loop)
            work = loop.run_in_executor(self._executor, self._generate, request, channel)
        except BaseException:
            self._turn.release()
            raise
        # The model is free only once the worker has returned, not when the consumer left.
        work.add_done_callback(channel.end)
        work.add_done_callback(lambda _: self._turn.release())
        self._active = channel
        return channel

    def _generate(self, request: GenerationRequest, channel: _Channel) -> None:
        """Worker thread: load the request's model if need be, then generate."""
        engine = self._engines.get(request.model)
        engine.generate(request, channel.emit, channel.cancelled)


@dataclass(frozen=True, slots=True)
class _End:
    error: TokenwireError | None = None


class _Channel:
    """Carries one generation's events from the worker thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[Event | _End] = asyncio.Queue()
        self.cancelled = threading.Event()

    def emit(self, event: Event) -> None:
        """Worker thread: hand one event to the loop."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()

    def end(self, work: asyncio.Future[None]) -> None:
        """Loop thread, after every event: the worker returned or raised."""
        self._queue.put_nowait(_End(_failure(work)))

    def cancel(self) -> None:
        self.cancelled.set()

    def __aiter__(self) -> _Channel:
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # stays ended if asked again
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item


def _failure(work: asyncio.Future[None]) -> TokenwireError | None:
    if work.cancelled():
        return ProviderError("the local provider is closed")
    error = work.exception()
    if error is None or isinstance(error, TokenwireError):
        return error
    return ProviderError(f"local model failed: {error}")


def _open_engine(model: LocalModel, config: LocalConfig) -> Engine:
    """Worker thread: find the model's GGUF and load it, reporting progress on stderr."""
    try:
        from server.providers.llama.engine import Engine
    except ImportError as exc:
        raise ProviderError("the local provider needs `pip install tokenwire[local]`") from exc
    path = llama_models.locate(model, _say)
    _say(f"loading {model.id} from {path}…")
    started = time.perf_counter()
    threads = config.n_threads or physical_cores()
    engine = Engine.open(
        path,
        n_ctx=model.n_ctx,
        n_threads=threads,
        verbose=config.verbose,
        prefix_cache=config.prefix_cache,
    )
    _say(f"loaded {model.id} in {time.perf_counter() - started:.2f} s")
    return engine


def _say(line: str) -> None:
    # Loading may happen before logging is configured; stderr is always there.
    print(f"tokenwire local: {line}", file=sys.stderr, flush=True)
