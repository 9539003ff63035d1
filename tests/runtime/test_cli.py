"""The `tokenwire` command as a user types it: keys and usage against the embedded database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def tokenwire(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "server", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_keys_create_list_rotate_revoke_and_usage(tmp_path: Path) -> None:
    where = ("--data-dir", str(tmp_path))
    created = tokenwire(
        "keys", "create", "--org", "acme", "--create-org", "--requests", "5", *where
    )
    key_id = created.split()[1]
    assert "tw_" in created and key_id.startswith("key_")
    assert key_id in tokenwire("keys", "list", "--org", "acme", *where)
    rotated = tokenwire("keys", "rotate", key_id, *where)
    assert "tw_" in rotated
    tokenwire("keys", "revoke", key_id, *where)
    assert "revoked" in tokenwire("keys", "list", *where)
    assert tokenwire("usage", "--group-by", "model", *where).splitlines()[-1].split()[:2] == [
        "TOTAL",
        "0",
    ]
