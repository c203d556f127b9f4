"""Manage gateway API keys in the database the gateway uses (keys and usage share it).

    python -m serve_app.runtime.keys_cli --db sqlite:///data/usage.db create --name ci \\
        --models demo,gpt-4o-mini --rpm 60 --tpm 10000 --budget 5
    python -m serve_app.runtime.keys_cli list
    python -m serve_app.runtime.keys_cli disable key_0123456789ab
    python -m serve_app.runtime.keys_cli enable key_0123456789ab

`--db` defaults to `$LEDGER_URL`, else `sqlite:///data/usage.db`. Output is JSON on stdout;
the plain key is printed once, by `create`, and never stored.
"""

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from serve_app.access.key_store import KeySpec, KeyStore, open_key_store
from serve_app.accounting.migrate import SchemaError
from serve_app.contracts.budgets import BUDGET_PERIODS
from serve_app.contracts.errors import GatewayError

DEFAULT_DB = "sqlite:///data/usage.db"


def _parser(default_db: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serve_app.runtime.keys_cli", description=__doc__
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--db", default=default_db, help=f"database URL (default: {default_db})")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--models", default="", help="comma-separated model ids (default: all)")
    create.add_argument("--rpm", type=int, default=None, help="requests per minute")
    create.add_argument("--tpm", type=int, default=None, help="tokens per minute")
    create.add_argument("--budget", type=float, default=None, help="spend limit in USD")
    create.add_argument(
        "--budget-period",
        default="total",
        choices=BUDGET_PERIODS,
        help="the budget's window: total, or UTC daily/weekly/monthly (default: total)",
    )
    commands.add_parser("list", help="list keys (never the keys themselves)")
    for command in ("disable", "enable"):
        sub = commands.add_parser(command, help=f"{command} a key")
        sub.add_argument("key_id")
    return parser


def _run(store: KeyStore, args: argparse.Namespace) -> Any:
    if args.command == "create":
        models = [model.strip() for model in args.models.split(",") if model.strip()]
        spec = KeySpec(args.name, models, args.rpm, args.tpm, args.budget, args.budget_period)
        record, plain = store.create(spec)
        print("Store this key now: it is not shown again.", file=sys.stderr)
        return {**record.public(), "key": plain}
    if args.command == "list":
        spend = store.spend_by_key()
        return [key.public() | {"spent_usd": spend.get(key.id, 0.0)} for key in store.list()]
    return store.set_enabled(args.key_id, args.command == "enable").public()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser(os.environ.get("LEDGER_URL") or DEFAULT_DB).parse_args(argv)
    try:
        store = open_key_store(args.db)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        result = _run(store, args)
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
