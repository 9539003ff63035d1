"""`UpstreamConfig` refuses, at start-up, what could only fail on every request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server.providers.http.config import UpstreamConfig
from server.runtime.config import load

OWNED = ["Host", "content-length", "Transfer-Encoding", "CONNECTION", "Keep-Alive"]


def config(**overrides: Any) -> UpstreamConfig:
    return UpstreamConfig(**{"name": "up", "base_url": "http://upstream.test/v1", **overrides})


@pytest.mark.parametrize("name", OWNED)
def test_headers_the_client_owns_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=f"upstream up: header '{name}' is the HTTP client's own"):
        config(headers={name: "x"})


@pytest.mark.parametrize(
    "headers",
    [{"x-a": "1\r\nx-injected: 1"}, {"x-a": "1\nb"}, {"x-a": "\0"}, {"x a": "1"}, {"": "1"}],
    ids=["CRLF", "LF", "NUL", "space in the name", "no name"],
)
def test_headers_that_cannot_go_out_as_given_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="upstream up: header"):
        config(headers=headers)


def test_headers_must_be_latin_1_strings() -> None:
    with pytest.raises(ValueError, match="latin-1"):
        config(headers={"x-title": "tokenwire ✓"})
    with pytest.raises(ValueError, match="strings"):
        config(headers={"x-retries": 3})


def test_other_headers_and_a_pool_size_are_kept() -> None:
    kept = config(headers={"X-Title": "tokenwire", "Authorization": "Bearer k"}, pool_size=8)
    assert dict(kept.headers) == {"X-Title": "tokenwire", "Authorization": "Bearer k"}
    assert kept.pool_size == 8
    with pytest.raises(ValueError, match="pool_size"):
        config(pool_size=0)


BAD = """\
provider = "none"

[providers.up]
base_url = "http://127.0.0.1:9/v1"
headers = { "X-Title" = "tokenwire", "Host" = "api.example.com" }
pool_size = 4

[[models]]
id = "m"
provider = "up"
"""


def test_a_config_file_naming_one_is_refused_with_the_file_and_header(tmp_path: Path) -> None:
    path = tmp_path / "tokenwire.toml"
    path.write_text(BAD)
    with pytest.raises(ValueError) as info:
        load({"config": str(path)}, environ={})
    assert str(info.value).startswith(f"config file {path}: upstream up: header 'Host' is ")
    path.write_text(BAD.replace(', "Host" = "api.example.com"', ""))
    assert load({"config": str(path)}, environ={}).upstreams.providers[0].config.pool_size == 4


def test_tokenwire_serve_refuses_to_start_with_one(tmp_path: Path) -> None:
    path = tmp_path / "tokenwire.toml"
    path.write_text(BAD)
    ports = ["--http-port", "0", "--grpc-port", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--config", str(path), *ports],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.startswith(f"tokenwire: config file {path}: upstream up: header 'Host' ")
    assert "Traceback" not in done.stderr
