"""The config file's [moderation] (and later [search]) sections into `PluginsConfig`."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.plugins.backend import BackendConfig
from server.runtime.config import load


def test_moderation_section_with_its_key_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "tokenwire.toml"
    path.write_text(
        '[moderation]\nbase_url = "https://api.openai.com/v1"\napi_key_env = "MOD_KEY"\n'
        'model = "omni-moderation-latest"\n'
    )
    config = load({"config": str(path)}, {"MOD_KEY": "sk-mod"})
    assert config.plugins.moderation == BackendConfig(
        "openai", "https://api.openai.com/v1", "sk-mod", "omni-moderation-latest"
    )
    assert config.plugins.moderation.api_key == "sk-mod"
    assert load({}, {}).plugins.moderation is None


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ('[moderation]\nkind = "openai"\n', "base_url is required"),
        ('[moderation]\nbase_url = "http://x"\nkind = "perspective"\n', "kind is one of"),
        ('[moderation]\nbase_url = "http://x"\ncolour = 1\n', "unknown settings colour"),
        ('[moderation]\nbase_url = "http://x"\napi_key_env = "NOPE"\n', "NOPE is not set"),
    ],
)
def test_bad_sections_are_refused_at_start(tmp_path: Path, section: str, error: str) -> None:
    path = tmp_path / "tokenwire.toml"
    path.write_text(section)
    with pytest.raises(ValueError, match=error):
        load({"config": str(path)}, {})
