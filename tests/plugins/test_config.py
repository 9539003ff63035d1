"""The config file's [moderation] and [search] sections into `PluginsConfig`."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.plugins.backend import BackendConfig
from server.runtime.config import Config, load


def loaded(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    path = tmp_path / "tokenwire.toml"
    path.write_text(text)
    return load({"config": str(path)}, environ or {})


@pytest.mark.parametrize(
    ("text", "section", "expected"),
    [
        (
            '[moderation]\nbase_url = "https://api.openai.com/v1"\napi_key_env = "KEY"\n'
            'model = "omni-moderation-latest"\n',
            "moderation",
            BackendConfig("openai", "https://api.openai.com/v1", "k", "omni-moderation-latest"),
        ),
        (
            '[search]\nkind = "brave"\nbase_url = "https://api.search.brave.com"\n'
            'api_key_env = "KEY"\ntimeout = 5\n',
            "search",
            BackendConfig("brave", "https://api.search.brave.com", "k", timeout=5.0),
        ),
    ],
)
def test_sections_with_their_key_from_the_environment(
    tmp_path: Path, text: str, section: str, expected: BackendConfig
) -> None:
    assert getattr(loaded(tmp_path, text, {"KEY": "k"}).plugins, section) == expected
    assert getattr(load({}, {}).plugins, section) is None


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ('[moderation]\nkind = "openai"\n', "base_url is required"),
        ('[moderation]\nbase_url = "http://x"\nkind = "perspective"\n', "kind is one of"),
        ('[moderation]\nbase_url = "http://x"\ncolour = 1\n', "unknown settings colour"),
        ('[moderation]\nbase_url = "http://x"\napi_key_env = "NOPE"\n', "NOPE is not set"),
        ('[search]\nkind = "bing"\nbase_url = "http://x"\n', "searxng, brave, tavily"),
    ],
)
def test_bad_sections_are_refused_at_start(tmp_path: Path, section: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        loaded(tmp_path, section)
