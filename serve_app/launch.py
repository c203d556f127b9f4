"""`make run`: validate a Serve config, apply `PORT`, print how to get a key, `serve run` it.

python -m serve_app.launch configs/local.yaml
"""

import os
import sys
import tempfile
from pathlib import Path

import yaml

from serve_app.config_check import ConfigError, check_file

KEY_HINT = """\
llm-gateway on http://{host}:{port}  (docs: /docs)
{auth_line}
  create a key:  GATEWAY_ADMIN_KEY=... .venv/bin/python -m serve_app.keys_cli create --name me
                 (or POST /api/v1/admin/keys with 'Authorization: Bearer $GATEWAY_ADMIN_KEY')
  then call:     curl -H "Authorization: Bearer <key>" http://{host}:{port}/api/v1/models
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0] if args else "configs/local.yaml")
    try:
        configs = check_file(source)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    document = yaml.safe_load(source.read_text())
    http = document.setdefault("http_options", {})
    if os.environ.get("PORT"):
        http["port"] = int(os.environ["PORT"])
    auth_on = any(config.auth.enabled for config in configs)
    auth_line = (
        "  auth: ON (every model route needs a key)"
        if auth_on
        else "  auth: OFF for this demo config (set auth.enabled: true to require keys)"
    )
    print(
        KEY_HINT.format(
            host=http.get("host", "127.0.0.1"), port=http.get("port", 8000), auth_line=auth_line
        ),
        flush=True,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(document, handle)
    serve = Path(sys.executable).with_name("serve")
    os.execv(str(serve), [str(serve), "run", handle.name])
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
