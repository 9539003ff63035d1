"""A request's sampling parameters as arguments for `Llama.generate`.

Unset parameters take OpenAI's defaults (temperature 1, top_p 1, no
penalties), and llama.cpp's extra filters (top_k, min_p, typical_p,
repeat_penalty) are switched off so that the OpenAI parameters mean what they
say. `response_format` becomes a GBNF grammar; `logit_bias` a logits processor.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp import LogitsProcessorList
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

from server.errors import InvalidRequest
from server.providers.base import GenerationRequest, ResponseFormat
from server.providers.llama.vocab import Vocab

_FIXED = {"top_k": 0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0}


@dataclass(frozen=True, slots=True)
class SamplingPlan:
    seed: int
    # Evaluate the prompt from scratch instead of reusing the KV cache: batched
    # and incremental evaluation differ in the last bits of the logits, which
    # would break "same seed, same text" after other requests ran in between.
    fresh: bool
    generate_kwargs: dict[str, Any] = field(default_factory=dict)

    def for_choice(self, choice: int) -> SamplingPlan:
        """Choice `choice` of `n`: its own seed, next to the first's (seed, seed + 1, …)."""
        return replace(self, seed=(self.seed + choice) % 0xFFFFFFFF)


def plan(
    request: GenerationRequest, vocab: Vocab, tools_grammar: str | None = None
) -> SamplingPlan:
    """Validate the sampling parameters and translate them for llama.cpp.

    `tools_grammar` (GBNF from `tools`), when given, shapes the answer instead of
    `response_format`.
    """
    shape = (
        grammar(request.response_format, vocab)
        if tools_grammar is None
        else _checked(LlamaGrammar.from_string(tools_grammar, verbose=False), vocab, "tools")
    )
    kwargs: dict[str, Any] = {
        **_FIXED,
        "temp": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "frequency_penalty": request.frequency_penalty or 0.0,
        "presence_penalty": request.presence_penalty or 0.0,
        "grammar": shape,
        "logits_processor": _bias_processor(request.logit_bias, vocab.size),
    }
    # llama.cpp reads 0xFFFFFFFF as "pick a random seed", so a requested seed must avoid it.
    seed = random.getrandbits(32) if request.seed is None else request.seed % 0xFFFFFFFF
    return SamplingPlan(seed=seed, fresh=request.seed is not None, generate_kwargs=kwargs)


def grammar(response_format: ResponseFormat | None, vocab: Vocab) -> LlamaGrammar | None:
    """The grammar that forces the requested JSON shape, or None for free text."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    if response_format.type == "json_schema":
        return _schema_grammar(response_format.schema, vocab)
    raise InvalidRequest(
        f"unknown response_format type {response_format.type!r}", param="response_format"
    )


def _schema_grammar(schema: str | None, vocab: Vocab) -> LlamaGrammar:
    try:
        text = json.dumps(json.loads(schema or "{}"))
        result = LlamaGrammar.from_json_schema(text, verbose=False)
    except Exception as exc:  # the converter raises bare Exceptions for unsupported schemas
        raise InvalidRequest(
            f"response_format.json_schema cannot be enforced: {exc}", param="response_format"
        ) from exc
    return _checked(result, vocab, "response_format")


def _checked(result: LlamaGrammar, vocab: Vocab, param: str) -> LlamaGrammar:
    """Parse the grammar once here: llama.cpp crashes on a NULL grammar sampler later."""
    sampler = llama_cpp.llama_sampler_init_grammar(
        vocab.handle, result._grammar.encode("utf-8"), result._root.encode("utf-8")
    )
    if not sampler:
        raise InvalidRequest(f"{param} produced a grammar llama.cpp cannot parse", param=param)
    llama_cpp.llama_sampler_free(sampler)
    return result


def _bias_processor(bias: Mapping[int, float], n_vocab: int) -> LogitsProcessorList | None:
    if not bias:
        return None
    bad = [t for t in bias if not 0 <= t < n_vocab]
    if bad:
        raise InvalidRequest(f"logit_bias names unknown token ids {bad}", param="logit_bias")
    ids = np.fromiter(bias.keys(), dtype=np.intc)
    values = np.fromiter(bias.values(), dtype=np.single)

    def apply(_: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        scores[ids] += values  # runs first in the sampler chain, so index == token id
        return scores

    return LogitsProcessorList([apply])
