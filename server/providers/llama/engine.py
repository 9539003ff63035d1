"""The loaded llama.cpp model and one request's generation on it.

Everything here runs on the provider's single worker thread, never on the
event loop: llama.cpp calls block for milliseconds to seconds, and one
`Llama` instance must not be used by two threads at once. Events leave
through an `emit` callback; a `threading.Event` checked once per token
stops the work when the consumer goes away.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from contextlib import closing
from pathlib import Path
from typing import Any

from llama_cpp import Llama

from server.errors import InvalidRequest, ProviderError, TokenwireError
from server.providers.base import (
    Delta,
    Event,
    FinishReason,
    GenerationRequest,
    Message,
    TokenLogprob,
    Usage,
)
from server.providers.llama.logprobs import token_logprob
from server.providers.llama.prefix_cache import PrefixCache
from server.providers.llama.prompt import ChatPrompter
from server.providers.llama.sampling import SamplingPlan, plan
from server.providers.llama.text import OutputGate, Utf8Stream
from server.providers.llama.tool_calls import CallGate, ChoiceGate
from server.providers.llama.tools import ToolPlan, plan_tools
from server.providers.llama.vocab import Vocab

Emit = Callable[[Event], None]


class Engine:
    """One model instance; not thread-safe, so only the worker thread touches it."""

    def __init__(self, llm: Any, prefix_cache: int = 0) -> None:
        self.llm = llm
        self.prefixes = PrefixCache(llm, prefix_cache)
        self.vocab = Vocab(llm)
        self.prompter = ChatPrompter(llm, self.vocab)
        self.n_ctx: int = int(llm.n_ctx())

    @classmethod
    def open(
        cls, path: Path, *, n_ctx: int, n_threads: int | None, verbose: bool, prefix_cache: int
    ) -> Engine:
        """Load `path`; `prefix_cache` bytes of KV states of recent prompts (0: evaluate
        every prompt afresh)."""
        try:
            llm = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                verbose=verbose,
                # Penalties count every generated token, as OpenAI's do, not the last 64.
                last_n_tokens_size=n_ctx,
            )
        except (ValueError, OSError) as exc:
            raise ProviderError(f"cannot load model {path}: {exc}") from exc
        return cls(llm, prefix_cache)

    def close(self) -> None:
        self.llm.close()

    def generate(self, request: GenerationRequest, emit: Emit, cancelled: threading.Event) -> None:
        """Emit the request's deltas, then its usage; stop early once `cancelled` is set."""
        try:
            self._generate(request, emit, cancelled)
        except TokenwireError:
            raise
        except Exception as exc:
            self.llm.reset()  # the KV cache may be half-written
            raise ProviderError(f"local model failed: {exc}") from exc

    def _generate(self, request: GenerationRequest, emit: Emit, cancelled: threading.Event) -> None:
        tools = plan_tools(request.tools, request.tool_choice, request.parallel_tool_calls)
        messages = request.messages
        if tools is not None:  # the tools are described first, in the system message
            messages = (Message(role="system", content=tools.prompt), *messages)
        prompt = self.prompter.tokens(messages)
        budget = token_budget(len(prompt), request.max_tokens, self.n_ctx)
        sampling = plan(request, self.vocab, tools.grammar if tools else None)
        generated, cached = 0, 0
        for choice in range(request.n):  # one after the other: one model, one worker thread
            decoder = _Decoder(self, request, tools, choice)
            choice_plan = sampling.for_choice(choice)
            reused = self._prepare(prompt, choice_plan)
            cached = reused if choice == 0 else cached
            if not self._choice(prompt, choice_plan, decoder, budget, emit, cancelled):
                return
            generated += decoder.count
        if not sampling.fresh and self.prefixes.enabled:
            self.prefixes.keep()
        emit(Usage(prompt_tokens=len(prompt), completion_tokens=generated, cached_tokens=cached))

    def _prepare(self, prompt: list[int], sampling: SamplingPlan) -> int:
        """Set up the KV cache for `prompt`; returns how many of its tokens it already holds."""
        if sampling.fresh or not self.prefixes.enabled:
            self.llm.reset()
            return 0
        return self.prefixes.restore(prompt)

    def _choice(
        self,
        prompt: list[int],
        sampling: SamplingPlan,
        decoder: _Decoder,
        budget: int,
        emit: Emit,
        cancelled: threading.Event,
    ) -> bool:
        """Generate one choice; False if cancelled on the way."""
        with closing(self._tokens(prompt, sampling)) as tokens:
            for token in tokens:
                if cancelled.is_set():
                    return False
                delta = decoder.step(token)
                if delta is not None:
                    emit(delta)
                if decoder.done or decoder.count >= budget:
                    break
        emit(decoder.finish())
        return True

    def _tokens(self, prompt: list[int], sampling: SamplingPlan) -> Generator[int, None, None]:
        self.llm.set_seed(sampling.seed)  # the sampler chain is rebuilt from it per call
        tokens: Generator[int, None, None] = self.llm.generate(prompt, **sampling.generate_kwargs)
        return tokens


def token_budget(prompt_tokens: int, max_tokens: int | None, n_ctx: int) -> int:
    """How many tokens may be generated; the context must hold prompt and completion."""
    room = n_ctx - prompt_tokens
    wanted = room if max_tokens is None else max_tokens
    if room <= 0 or wanted > room:
        raise InvalidRequest(
            f"This model's maximum context length is {n_ctx} tokens. However, you requested "
            f"{prompt_tokens + max(wanted, 0)} tokens ({prompt_tokens} in the messages, "
            f"{max(wanted, 0)} in the completion).",
            param="messages",
            code="context_length_exceeded",
        )
    if wanted < 1:
        raise InvalidRequest("max_tokens must be at least 1", param="max_tokens")
    return wanted


class _Decoder:
    """Turns sampled tokens into deltas and knows why generation ended."""

    def __init__(
        self, engine: Engine, request: GenerationRequest, tools: ToolPlan | None, choice: int
    ) -> None:
        self._engine = engine
        self._choice = choice
        # How many alternatives to report per token; -1: no logprobs at all.
        self._top = (request.top_logprobs or 0) if request.logprobs else -1
        self._utf8 = Utf8Stream()
        self._gate = _gate(request, tools)
        self.count = 0
        self.done = False  # an end-of-generation token or a stop string was met

    def step(self, token: int) -> Delta | None:
        self.count += 1
        if self._engine.vocab.is_eog(token):
            self.done = True
            return None
        text = self._utf8.feed(self._engine.vocab.piece(token))
        delta = self._gate.push(text, self._logprob(token))
        self.done = self._gate.stopped
        if delta is not None:
            delta.choice = self._choice
        return delta

    def finish(self) -> Delta:
        reason = FinishReason.STOP if self.done else FinishReason.LENGTH
        delta = self._gate.finish(reason, tail=self._utf8.flush())
        delta.choice = self._choice
        return delta

    def _logprob(self, token: int) -> TokenLogprob | None:
        if self._top < 0:
            return None
        return token_logprob(self._engine.llm, self._engine.vocab, token, self._top)


def _gate(request: GenerationRequest, tools: ToolPlan | None) -> OutputGate | CallGate | ChoiceGate:
    """What reads the generated text: plain text, tool calls, or whichever comes."""
    if tools is None:
        return OutputGate(request.stop)
    return CallGate() if tools.calls_only else ChoiceGate(OutputGate(request.stop))
