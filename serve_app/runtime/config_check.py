"""Validates gateway args and names the offending key and file in the message.

`llm-gateway-check-config configs/local.yaml` checks every application of a Serve config
that points at `serve_app.builder:build_app`, without starting Ray.
"""

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from serve_app.contracts.config import (
    SHIPPED_CATALOG,
    AdapterConfig,
    CommercialConfig,
    CommercialModelConfig,
    GatewayConfig,
    LocalModelConfig,
)
from serve_app.runtime.settings import (
    DEFAULT_PROXY_LOCATION,
    apply_environment,
    ledger_url_problem,
    production_problems,
)

BUILDER_IMPORT_PATH = "serve_app.builder:build_app"


class ConfigError(ValueError):
    """The gateway args are invalid; the message names each bad key. `problems`: the same,
    one line each (`<file> (applications[i].args): <key>: <what is wrong>`)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [" ".join(message.split())]


def error_items(error: ValidationError) -> list[str]:
    """`<key>: <what is wrong>` for each error, the key as a dotted path."""
    items = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "<args>"
        what = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        items.append(f"{location}: {what}")
    return items


def describe_errors(error: ValidationError, source: str) -> ConfigError:
    items = error_items(error)
    message = "\n".join([f"invalid gateway config in {source}:", *(f"  - {i}" for i in items)])
    return ConfigError(message, [f"{source}: {item}" for item in items])


def guess_source() -> str:
    """The Serve config file being run (`serve run FILE.yaml`), when it can be told."""
    for arg in sys.argv[1:]:
        if arg.endswith((".yaml", ".yml")) and Path(arg).is_file():
            return f"{arg} (applications[].args)"
    return "the application's args"


def validate_args(
    args: dict[str, Any],
    source: str | None = None,
    environ: Mapping[str, str] | None = None,
    proxy_location: str | None = None,
) -> GatewayConfig:
    """Validate the args (with the environment's settings applied), refuse unsafe production
    settings, and resolve the commercial catalog (shipped defaults + overrides)."""
    environ = os.environ if environ is None else environ
    try:
        config = GatewayConfig.model_validate(apply_environment(args, environ))
    except ValidationError as exc:
        raise describe_errors(exc, source or guess_source()) from None
    problems = production_problems(config, environ, proxy_location)
    url_problem = ledger_url_problem(config, environ)
    if url_problem:
        problems.insert(0, url_problem)
    if problems:
        where = source or guess_source()
        context = "refusing to start" + (
            " in production" if config.environment == "production" else ""
        )
        raise ConfigError(
            f"{context}:\n  - " + "\n  - ".join(problems),
            [f"{where}: {context}: {problem}" for problem in problems],
        )
    if config.commercial is not None:
        commercial = resolve_catalog(config.commercial)
        clashes = config.local_ids() & {model.id for model in commercial.models}
        if clashes:
            raise ConfigError(
                f"model ids used by both local and commercial models: {sorted(clashes)}"
            )
        config = config.model_copy(update={"commercial": commercial})
    check_fallbacks(config)
    return config


def check_fallbacks(config: GatewayConfig) -> None:
    """Every fallback names a known model other than the one it backs up."""
    commercial = config.commercial.models if config.commercial else []
    known = config.local_ids() | {model.id for model in commercial}
    declared: list[LocalModelConfig | AdapterConfig | CommercialModelConfig] = [
        *config.models,
        *config.adapters.declared,
        *commercial,
    ]
    for model in declared:
        for fallback in model.fallbacks:
            if fallback == model.id or fallback not in known:
                raise ConfigError(
                    f"model {model.id!r}: fallback {fallback!r} is not another known model id"
                )


def default_catalog() -> list[CommercialModelConfig]:
    entries = yaml.safe_load(SHIPPED_CATALOG.read_text())
    try:
        return [CommercialModelConfig.model_validate(entry) for entry in entries]
    except ValidationError as exc:
        raise describe_errors(exc, str(SHIPPED_CATALOG)) from None


def resolve_catalog(commercial: CommercialConfig) -> CommercialConfig:
    """The shipped catalog overlaid with the config's own entries (same id replaces)."""
    if not commercial.include_default_catalog:
        return commercial
    merged = {model.id: model for model in default_catalog()}
    merged.update({model.id: model for model in commercial.models})
    return commercial.model_copy(
        update={"models": list(merged.values()), "include_default_catalog": False}
    )


def check_file(path: Path, environ: Mapping[str, str] | None = None) -> list[GatewayConfig]:
    document = yaml.safe_load(path.read_text()) or {}
    configs = []
    for index, application in enumerate(document.get("applications", [])):
        if application.get("import_path") != BUILDER_IMPORT_PATH:
            continue
        source = f"{path} (applications[{index}].args)"
        location = document.get("proxy_location", DEFAULT_PROXY_LOCATION)
        configs.append(validate_args(application.get("args") or {}, source, environ, location))
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
        local = sum(len(c.models) for c in configs)
        commercial = sum(len(c.commercial.models) for c in configs if c.commercial)
        print(
            f"{path}: ok ({len(configs)} application(s), {local} local and "
            f"{commercial} commercial model(s))"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
