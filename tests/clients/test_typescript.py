"""The TypeScript client's own tests (node's test runner) against a real tokenwire.

`npm test` in clients/typescript compiles the package and its tests with tsc, then its harness
starts this checkout's server with the fake provider on ports 0 (TOKENWIRE_PYTHON: this
interpreter), streams a chat over gRPC with Connect and calls the REST gateway with the
official openai npm SDK.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "typescript"
TESTS = 3


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_typescript_client_streams_over_grpc_and_calls_rest() -> None:
    subprocess.run(["bash", ROOT / "scripts" / "npm_ci"], check=True, timeout=600)
    env = {**os.environ, "TOKENWIRE_PYTHON": sys.executable}
    done = subprocess.run(
        ["npm", "test"], cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"# pass {TESTS}\n" in done.stdout and "# fail 0\n" in done.stdout, done.stdout
