"""The Redis client is imported only when a limiter uses it: without `redis_url` no
process pays for it."""

from __future__ import annotations

import subprocess
import sys


def test_the_in_process_limiter_imports_no_redis() -> None:
    code = (
        "import sys\nfrom server.limits.build import build_limiter\n"
        "build_limiter(None)\nprint('redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
