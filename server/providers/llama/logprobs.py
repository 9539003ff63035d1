"""Log-probabilities of sampled tokens, read from the context's last logits.

The model is loaded without `logits_all` (that would keep n_ctx * vocab floats,
4 GB for Gemma's 262k vocabulary), so the logits are read straight from the
llama.cpp context right after the token was sampled from them. They are the
model's own distribution, before temperature, penalties, bias or grammar.
"""

from __future__ import annotations

from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from server.providers.base import TokenLogprob, TopLogprob
from server.providers.llama.vocab import Vocab


def token_logprob(llm: Any, vocab: Vocab, token: int, top_n: int) -> TokenLogprob:
    """The logprob of `token` and of the `top_n` likeliest tokens at its position."""
    logprobs = _log_softmax(_last_logits(llm, vocab.size))
    piece = vocab.piece(token)
    return TokenLogprob(
        token=piece.decode("utf-8", errors="replace"),
        logprob=float(logprobs[token]),
        bytes=tuple(piece),
        top=tuple(_top(logprobs, vocab, top_n)),
    )


def _last_logits(llm: Any, n_vocab: int) -> npt.NDArray[np.float32]:
    pointer = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(n_vocab,))


def _log_softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = logits - logits.max()
    result: npt.NDArray[np.float32] = shifted - np.log(np.exp(shifted).sum())
    return result


def _top(logprobs: npt.NDArray[np.float32], vocab: Vocab, n: int) -> list[TopLogprob]:
    if n <= 0:
        return []
    best = np.argpartition(logprobs, -n)[-n:]
    best = best[np.argsort(-logprobs[best], kind="stable")]
    return [_alternative(int(t), float(logprobs[t]), vocab) for t in best]


def _alternative(token: int, logprob: float, vocab: Vocab) -> TopLogprob:
    piece = vocab.piece(token)
    return TopLogprob(piece.decode("utf-8", errors="replace"), logprob, tuple(piece))
