"""`llm-gateway db upgrade|current`: the schema of the gateway's database.

    llm-gateway db upgrade              # to the newest revision this code knows
    llm-gateway db current              # the revision the database is at, and this code's head
    llm-gateway db upgrade --db postgresql://gateway@db.internal/gateway

`--db` defaults to `$LEDGER_URL`, else `sqlite:///data/usage.db`. Exit status: 0 done,
1 the database can't be reached or its schema is newer than this code, 2 a bad URL.
"""

import argparse
import os
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from serve_app.accounting.db import DatabaseUrlError, create_db_engine, redact
from serve_app.accounting.migrate import (
    SchemaError,
    current_revision,
    head_revision,
    known_revisions,
    upgrade,
)

DEFAULT_DB = "sqlite:///data/usage.db"


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    db = commands.add_parser("db", help="database schema: upgrade, current")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    for name, text in (("upgrade", "apply every pending migration"), ("current", "show revisions")):
        sub = db_commands.add_parser(name, help=text)
        sub.add_argument("--db", default=None, help="database URL (default: $LEDGER_URL)")
    db_commands.choices["upgrade"].add_argument("--revision", default="head")


def run(args: argparse.Namespace) -> int:
    url = args.db or os.environ.get("LEDGER_URL") or DEFAULT_DB
    setting = "--db" if args.db else ("LEDGER_URL" if os.environ.get("LEDGER_URL") else "default")
    try:
        engine = create_db_engine(url, pool_size=1, setting=setting)
    except DatabaseUrlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(engine, args, redact(url))
    except (SQLAlchemyError, SchemaError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        print(f"error: the database at {redact(url)} failed: {detail}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def _run(engine: object, args: argparse.Namespace, where: str) -> int:
    head = head_revision()
    current = current_revision(engine)  # type: ignore[arg-type]
    if args.db_command == "current":
        print(f"database {where}: {current or '<none>'} (this code's head: {head})")
        return 0
    if current is not None and current not in known_revisions():
        print(f"error: {where} is at {current}, newer than this code ({head})", file=sys.stderr)
        return 1
    reached = upgrade(engine, args.revision)  # type: ignore[arg-type]
    print(f"database {where}: {current or '<none>'} -> {reached}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-gateway", description="llm-gateway tools")
    commands = parser.add_subparsers(dest="command", required=True)
    add_parser(commands)
    for name in ("keys", "check-config"):
        commands.add_parser(name, help=f"same as llm-gateway-{name}", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "keys":
        from serve_app.runtime.keys_cli import main as keys_main

        return keys_main(rest)
    if args.command == "check-config":
        from serve_app.runtime.config_check import main as check_main

        return check_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
