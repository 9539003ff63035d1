"""Plugins import their heavy libraries on first use, not with their modules: every
process imports the plugin stage (the --workers supervisor too, through the config), few
read a PDF or heal an answer."""

from __future__ import annotations

from tests.imports import loaded_after


def test_the_plugin_stage_imports_no_heavy_library() -> None:
    heavy = ("pypdf", "jsonschema", "json_repair")
    assert loaded_after("import server.plugins.stage", heavy) == []
