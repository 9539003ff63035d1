"""`tokenwire keys create|list|revoke|rotate`, straight on the database.

The CLI is the operator's tool on the machine holding the database, so it
needs no admin token. `create` and `rotate` print the secret once.

    tokenwire keys create --org acme --create-org --name ci --requests 60 --budget 5
    tokenwire keys list [--org acme]
    tokenwire keys revoke key_…
    tokenwire keys rotate key_…
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from server.errors import TokenwireError
from server.keys.migrations import MIGRATIONS
from server.keys.records import KeyRecord, KeySpec
from server.keys.store import Issued, KeyStore
from server.limits.base import Rate
from server.storage.database import Database
from server.storage.migrations import migrate
from server.usage.terminal import parse_time, table, when


def configure(
    parser: argparse.ArgumentParser, parents: Sequence[argparse.ArgumentParser] = ()
) -> None:
    """Adds the `create`, `list`, `revoke` and `rotate` subcommands (dest `keys_command`),
    each also taking the options of `parents`."""
    sub = parser.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser(
        "create", help="create an API key and print its secret once", parents=parents
    )
    create.add_argument("--org", required=True, help="organization id")
    create.add_argument("--create-org", action="store_true", help="create the organization too")
    create.add_argument("--name", default="", help="display name")
    create.add_argument("--default-model", help="model for requests that name none")
    create.add_argument(
        "--allow-model", action="append", default=[], help="a model the key may use (repeatable)"
    )
    create.add_argument(
        "--allow-agent", action="append", default=[], help="an agent the key may run (repeatable)"
    )
    create.add_argument("--requests", type=int, help="requests per window")
    create.add_argument("--tokens", type=int, help="tokens per window")
    create.add_argument("--window", type=int, default=60, help="window seconds (default 60)")
    create.add_argument("--budget", type=float, help="budget in USD")
    create.add_argument("--expires", help="expiry: 2025-12-31, an ISO time, or 30d")
    listing = sub.add_parser("list", help="list API keys (never their secrets)", parents=parents)
    listing.add_argument("--org", help="only this organization's keys")
    for name, text in (("revoke", "revoke an API key"), ("rotate", "give a key a new secret")):
        sub.add_parser(name, help=text, parents=parents).add_argument(
            "key_id", help="the key's id (key_…)"
        )


async def run(args: argparse.Namespace, db: Database, out: TextIO = sys.stdout) -> int:
    """Runs the subcommand in `args.keys_command`; errors print as one line, exit status 1."""
    await migrate(db, MIGRATIONS)
    store = KeyStore(db)
    try:
        if args.keys_command == "create":
            _issued(await store.create(spec_of(args), create_organization=args.create_org), out)
        elif args.keys_command == "list":
            print(keys_table(await store.list(args.org), time.time()), file=out)
        elif args.keys_command == "revoke":
            key = await store.revoke(args.key_id)
            print(f"revoked {key.id} ({key.prefix}…)", file=out)
        else:
            _issued(await store.rotate(args.key_id), out)
    except (TokenwireError, ValueError) as e:
        print(f"error: {e}", file=out)
        return 1
    return 0


def spec_of(args: argparse.Namespace) -> KeySpec:
    expires = parse_time(args.expires, time.time(), future=True) if args.expires else None
    return KeySpec(
        organization_id=args.org,
        name=args.name,
        default_model=args.default_model,
        allowed_models=tuple(args.allow_model),
        allowed_agents=tuple(args.allow_agent),
        rate=Rate(args.requests, args.tokens, args.window),
        budget_usd=args.budget,
        expires_at=expires,
    )


def _issued(issued: Issued, out: TextIO) -> None:
    key = issued.key
    print(f"key {key.id} in organization {key.organization_id}", file=out)
    print(f"secret (shown once, store it now): {issued.secret}", file=out)


def keys_table(keys: list[KeyRecord], now: float) -> str:
    headers = ("ID", "ORG", "NAME", "PREFIX", "STATE", "SPENT", "BUDGET", "EXPIRES", "CREATED")
    rows = [
        (
            k.id,
            k.organization_id,
            k.spec.name or "-",
            k.prefix,
            k.state(now),
            k.spent_usd,
            k.spec.budget_usd,
            when(k.spec.expires_at),
            when(k.created_at),
        )
        for k in keys
    ]
    return table(headers, rows)
