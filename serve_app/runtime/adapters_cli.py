"""Register, list and delete run-time LoRA adapters through a running gateway's admin API
(the same checks as `POST /api/v1/admin/adapters`: allowed roots, PEFT, base model fit).

    python -m serve_app.runtime.adapters_cli register --id support-v2 --base demo \\
        --path /home/ray/models/adapters/support-v2 [--description ...] \\
        [--input-price 0.5 --output-price 1.5] [--fallbacks demo]
    python -m serve_app.runtime.adapters_cli list
    python -m serve_app.runtime.adapters_cli delete support-v2

`--url` defaults to `$GATEWAY_URL`, else http://127.0.0.1:8000; the admin key is read from
`$GATEWAY_ADMIN_KEY` (`--admin-key-env` names another variable). Output is JSON on stdout.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
ROUTE = "/api/v1/admin/adapters"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serve_app.runtime.adapters_cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default=os.environ.get("GATEWAY_URL") or DEFAULT_URL)
    parser.add_argument("--admin-key-env", default="GATEWAY_ADMIN_KEY")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
    commands = parser.add_subparsers(dest="command", required=True)
    register = commands.add_parser("register", help="register an adapter directory")
    register.add_argument("--id", required=True)
    register.add_argument("--base", required=True, help="the local model it was trained on")
    register.add_argument("--path", required=True, help="PEFT directory under allowed_roots")
    register.add_argument("--description", default="")
    register.add_argument("--input-price", type=float, help="USD per 1M input tokens")
    register.add_argument("--output-price", type=float, help="USD per 1M output tokens")
    register.add_argument("--fallbacks", default="", help="comma-separated model ids")
    commands.add_parser("list", help="list declared and registered adapters")
    delete = commands.add_parser("delete", help="delete a registered adapter")
    delete.add_argument("adapter_id")
    return parser


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    if args.command == "list":
        return "GET", ROUTE, None
    if args.command == "delete":
        return "DELETE", f"{ROUTE}/{args.adapter_id}", None
    body: dict[str, Any] = {
        "id": args.id,
        "base": args.base,
        "path": os.path.abspath(args.path),
        "description": args.description,
        "fallbacks": [f.strip() for f in args.fallbacks.split(",") if f.strip()],
    }
    if args.input_price is not None or args.output_price is not None:
        body["price"] = {
            "input_per_million_usd": args.input_price or 0.0,
            "output_per_million_usd": args.output_price or 0.0,
        }
    return "POST", ROUTE, body


def call(args: argparse.Namespace) -> tuple[int, Any]:
    method, path, body = _request(args)
    headers = {"content-type": "application/json"}
    admin_key = os.environ.get(args.admin_key_env)
    if admin_key:
        headers["authorization"] = f"Bearer {admin_key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        args.url.rstrip("/") + path, data=data, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read() or b"null")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        status, payload = call(args)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    if status >= 400:
        message = (payload or {}).get("error", {}).get("message", payload)
        print(f"error ({status}): {message}", file=sys.stderr)
        return 1
    print(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
