"""Which modules a fresh interpreter holds after running some code: heavy libraries are
imported on first use, so a process that never uses them does not carry them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence


def loaded_after(code: str, modules: Sequence[str]) -> list[str]:
    """The `modules` a new Python process has imported once `code` has run."""
    check = f"print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))"
    probe = f"{code}\nimport json, sys\n{check}"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    loaded: list[str] = json.loads(out.stdout.splitlines()[-1])
    return loaded
