"""Plugins import their heavy libraries on first use, not with their modules: every
process imports the plugin stage (the --workers supervisor too, through the config), few
read a PDF or heal an answer."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pypdf", "jsonschema", "json_repair")


def test_the_plugin_stage_imports_no_heavy_library() -> None:
    code = f"import sys, server.plugins.stage; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
