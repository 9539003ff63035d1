"""A model's vocabulary as the local provider needs it: token bytes and end-of-generation.

llama-cpp-python's own `detokenize` reads each piece into a 32-byte buffer and
silently truncates longer pieces (Gemma has pieces of 48 bytes), so pieces are
read here through the C API with a buffer that grows when llama.cpp asks.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Any

import llama_cpp


class Vocab:
    """Read-only view of a loaded model's vocabulary."""

    def __init__(self, llm: Any) -> None:
        self.handle = llama_cpp.llama_model_get_vocab(llm.model)  # C pointer, owned by the model
        self.size: int = int(llm.n_vocab())
        self.bos: int = int(llm.token_bos())
        self.add_bos: bool = bool(llama_cpp.llama_vocab_get_add_bos(self.handle))
        self.bos_text: str = self._text(self.bos)
        self.eos_text: str = self._text(int(llm.token_eos()))
        # Pieces are looked up once per generated token and per logprob alternative.
        self.piece = lru_cache(maxsize=65536)(self._piece)

    def is_eog(self, token: int) -> bool:
        """Whether `token` ends generation (`<eos>`, `<end_of_turn>`, …)."""
        return bool(llama_cpp.llama_vocab_is_eog(self.handle, token))

    def _piece(self, token: int) -> bytes:
        """The bytes `token` stands for; control tokens render as nothing."""
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self.handle, token, buffer, size, 0, False)
            if n >= 0:
                return buffer.raw[:n]
            size = -n  # llama.cpp returns minus the size it needs

    def _text(self, token: int) -> str:
        raw = llama_cpp.llama_vocab_get_text(self.handle, token)
        return raw.decode("utf-8", errors="replace") if raw else ""
