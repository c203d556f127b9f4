"""Validates gateway args and names the offending key and file in the message.

`llm-gateway-check-config configs/local.yaml` checks every application of a Serve config
that points at `serve_app.builder:build_app`, without starting Ray.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from serve_app.config import GatewayConfig

BUILDER_IMPORT_PATH = "serve_app.builder:build_app"


class ConfigError(ValueError):
    """The gateway args are invalid; the message names each bad key."""


def describe_errors(error: ValidationError, source: str) -> str:
    lines = [f"invalid gateway config in {source}:"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "<args>"
        if item["type"] == "extra_forbidden":
            lines.append(f"  - {location}: unknown key")
        else:
            lines.append(f"  - {location}: {item['msg']}")
    return "\n".join(lines)


def guess_source() -> str:
    """The Serve config file being run (`serve run FILE.yaml`), when it can be told."""
    for arg in sys.argv[1:]:
        if arg.endswith((".yaml", ".yml")) and Path(arg).is_file():
            return f"{arg} (applications[].args)"
    return "the application's args"


def validate_args(args: dict[str, Any], source: str | None = None) -> GatewayConfig:
    try:
        return GatewayConfig.model_validate(args or {})
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, source or guess_source())) from None


def check_file(path: Path) -> list[GatewayConfig]:
    document = yaml.safe_load(path.read_text()) or {}
    configs = []
    for index, application in enumerate(document.get("applications", [])):
        if application.get("import_path") != BUILDER_IMPORT_PATH:
            continue
        source = f"{path} (applications[{index}].args)"
        configs.append(validate_args(application.get("args") or {}, source))
    if not configs:
        raise ConfigError(f"{path}: no application imports {BUILDER_IMPORT_PATH}")
    return configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    options = parser.parse_args(argv)
    for path in options.files:
        try:
            configs = check_file(path)
        except (ConfigError, OSError, yaml.YAMLError) as exc:
            print(exc, file=sys.stderr)
            return 1
        models = sum(len(c.models) for c in configs)
        print(f"{path}: ok ({len(configs)} application(s), {models} local model(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
