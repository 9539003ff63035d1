"""`tokenwire usage` as a library function: a terminal table or CSV from a real database."""

from __future__ import annotations

import argparse
import io

from server.storage.database import Database
from server.usage import cli
from server.usage.store import UsageStore
from tests.usage.factories import record


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tokenwire usage")
    cli.configure(parser)
    return parser.parse_args(argv)


async def usage_cli(db: Database, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = await cli.run(parse(*argv), db, out)
    return status, out.getvalue()


async def seed(usage: UsageStore) -> None:
    for i, (org, model, cost) in enumerate(
        [("acme", "a", 0.5), ("acme", "b", 1.25), ("x", "a", 2.0)]
    ):
        await usage.record(
            record(request_id=f"r{i}", organization_id=org, model=model, cost_usd=cost)
        )
    await usage.flush()  # the CLI reads through its own store


async def test_a_table_grouped_by_model_with_a_total(usage: UsageStore, database: Database) -> None:
    await seed(usage)
    status, text = await usage_cli(database)
    lines = text.splitlines()
    assert status == 0
    assert lines[0].split()[:3] == ["MODEL", "REQUESTS", "ERRORS"]
    assert [line.split()[:2] for line in lines[2:]] == [["a", "2"], ["b", "1"], ["TOTAL", "3"]]
    assert "3.75" in lines[-1]


async def test_filters_group_by_and_csv(usage: UsageStore, database: Database) -> None:
    await seed(usage)
    _, text = await usage_cli(database, "--org", "acme", "--group-by", "organization",
                              "--group-by", "day")  # fmt: skip
    rows = text.splitlines()[2:]
    assert rows[0].split()[:2] == ["acme", "1970-01-12"] and rows[-1].split()[:2] == ["TOTAL", "2"]
    _, csv_text = await usage_cli(database, "--org", "x", "--csv")
    assert csv_text.startswith("request_id,created,") and len(csv_text.splitlines()) == 2
    status, error = await usage_cli(database, "--since", "last tuesday")
    assert status == 1 and error.startswith("error: not a time")
