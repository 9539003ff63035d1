"""The KV cache of recent conversations, so the next turn skips the history it resends.

llama-cpp-python already reuses the part of a prompt that matches the tokens
still in the KV cache, but that is only the last request's: one other
conversation in between and the next turn re-reads its whole history. So
after each unseeded generation the sequence's KV state (llama.cpp's
per-sequence state, without the logits) is kept here, keyed by its tokens;
before the next one, the state sharing the longest prefix with the prompt is
put back when it beats what is in the KV cache. States are dropped least
recently used first beyond `capacity` bytes, and a state whose tokens are a
prefix of a newer one (the same conversation, one turn earlier) goes at once.

Seeded requests evaluate their prompt afresh instead: batched and incremental
evaluation differ in the last bits of the logits, which would break "same
seed, same text". Everything here runs on the model's worker thread.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Sequence
from itertools import takewhile
from typing import Any

import llama_cpp

_SEQUENCE = 0  # tokenwire runs one sequence per context


class PrefixCache:
    """KV states of recent token sequences for one loaded model."""

    def __init__(self, llm: Any, capacity: int) -> None:
        self._llm = llm
        self._capacity = capacity
        self._states: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._size = 0

    @property
    def enabled(self) -> bool:
        return self._capacity > 0

    def restore(self, prompt: Sequence[int]) -> int:
        """Put back the best state for `prompt`; returns how many prompt tokens need no
        evaluation (at least the last one always does)."""
        held = _common(self._llm._input_ids, prompt)  # the tokens in the KV cache
        best = max(self._states, key=lambda k: _common(k, prompt), default=None)
        if best is not None and _common(best, prompt) > held:
            self._load(best)
            held = _common(best, prompt)
        return min(held, len(prompt) - 1)

    def keep(self) -> None:
        """Remember the sequence now in the KV cache."""
        tokens = tuple(int(t) for t in self._llm._input_ids)
        for older in [k for k in self._states if tokens[: len(k)] == k]:
            self._size -= len(self._states.pop(older))
        state = self._save()
        self._states[tokens] = state
        self._size += len(state)
        while self._size > self._capacity and self._states:
            self._size -= len(self._states.popitem(last=False)[1])

    def _save(self) -> bytes:
        ctx = self._llm.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, _SEQUENCE)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, _SEQUENCE)
        return ctypes.string_at(buffer, written)  # one copy; slicing would build a list of ints

    def _load(self, tokens: tuple[int, ...]) -> None:
        self._states.move_to_end(tokens)
        state = self._states[tokens]
        ctx = self._llm.ctx
        memory = llama_cpp.llama_get_memory(ctx)
        llama_cpp.llama_memory_seq_rm(memory, _SEQUENCE, -1, -1)
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if not llama_cpp.llama_state_seq_set_data(ctx, buffer, len(state), _SEQUENCE):
            self._llm.reset()  # nothing usable left in the KV cache: evaluate afresh
            return
        self._llm.n_tokens = len(tokens)
        self._llm.input_ids[: len(tokens)] = tokens
        self._llm._requires_eval = True  # the logits are not the state's: evaluate one token


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    return sum(1 for _ in takewhile(lambda pair: pair[0] == pair[1], zip(a, b, strict=False)))
