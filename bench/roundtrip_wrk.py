"""An optional cross-check for `roundtrip.py`: the same POST under `wrk`, if installed.

`wrk` is a Debian package (`apt-get install -y wrk`); without it `available()`
is False and `roundtrip.py` says so and skips this part.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    bad: int  # non-2xx responses plus socket errors


def available() -> bool:
    return shutil.which("wrk") is not None


def run(port: int, path: str, body: bytes, connections: int, seconds: float) -> WrkResult:
    """One wrk thread (the machine has two cores) and `connections` keep-alive connections."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_lua(body))
        argv = [
            "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency",
            "-s", str(script), f"http://127.0.0.1:{port}{path}",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    return parse(done.stdout)


def _lua(body: bytes) -> str:
    quoted = body.decode().replace("\\", "\\\\").replace('"', '\\"')
    return (
        'wrk.method = "POST"\n'
        f'wrk.body = "{quoted}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
    )


def parse(out: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    bad += sum(int(g) for g in errors.groups()) if errors else 0
    return WrkResult(float(rps.group(1)), _percentile(out, "50"), _percentile(out, "99"), bad)


def _percentile(out: str, p: str) -> float:
    found = re.search(rf"^\s+{p}(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if found is None:
        return float("nan")
    return float(found.group(1)) * UNITS[found.group(2)]
