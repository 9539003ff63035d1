"""`tokenwire keys …` as library functions on a real database."""

from __future__ import annotations

import argparse
import io

from server.keys import cli
from server.keys.store import KeyStore
from server.storage.database import Database


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tokenwire keys")
    cli.configure(parser)
    return parser.parse_args(argv)


async def keys(db: Database, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = await cli.run(parse(*argv), db, out)
    return status, out.getvalue()


async def test_create_list_rotate_revoke(database: Database) -> None:
    status, text = await keys(
        database, "create", "--org", "acme", "--create-org", "--name", "ci", "--requests", "5",
        "--budget", "2.5", "--expires", "30d", "--allow-model", "fake-echo",
    )  # fmt: skip
    assert status == 0
    secret = text.split("store it now): ")[1].strip()
    key = await KeyStore(database).verify(secret)
    assert key.spec.rate.requests == 5 and key.spec.allowed_models == ("fake-echo",)
    assert key.spec.expires_at is not None

    status, listing = await keys(database, "list", "--org", "acme")
    assert status == 0 and key.id in listing and key.prefix in listing and secret not in listing
    assert listing.splitlines()[0].split()[:5] == ["ID", "ORG", "NAME", "PREFIX", "STATE"]

    status, text = await keys(database, "rotate", key.id)
    new_secret = text.split("store it now): ")[1].strip()
    assert status == 0 and new_secret != secret
    status, text = await keys(database, "revoke", key.id)
    assert status == 0 and "revoked" in text
    _, listing = await keys(database, "list")
    assert "revoked" in listing


async def test_errors_are_one_line_and_status_1(database: Database) -> None:
    for argv in (
        ("create", "--org", "nobody"),
        ("create", "--org", "acme", "--create-org", "--expires", "whenever"),
        ("create", "--org", "acme", "--create-org", "--requests", "0"),
        ("revoke", "key_nope"),
        ("list", "--org", "nobody"),
    ):
        status, text = await keys(database, *argv)
        assert status == 1 and text.startswith("error: ") and len(text.splitlines()) == 1
