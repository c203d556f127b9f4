"""What `make run` checks before Ray starts, each problem told in one line naming the fix.

A new user's usual failures would otherwise surface minutes later, deep in a Ray or
HAProxy traceback: a busy port, a model or adapter directory that is not there, a config
error, a provider key that a config marks as required but that is not set.
"""

import errno
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from serve_app.contracts.config import GatewayConfig
from serve_app.runtime.config_check import ConfigError, check_file

# HAProxy (the fast path) also listens on these, on every interface (Ray 2.60's defaults).
HAPROXY_PORTS = {"RAY_SERVE_HAPROXY_STATS_PORT": 8404, "RAY_SERVE_HAPROXY_METRICS_PORT": 9101}


@dataclass(frozen=True)
class Plan:
    """The validated configs and the raw Serve document `serve run` will get."""

    source: Path
    document: dict[str, Any]
    configs: list[GatewayConfig]


def load(source: Path, environ: Mapping[str, str]) -> tuple[Plan | None, list[str]]:
    """(plan, problems): the file read and validated, or why it cannot be."""
    hint = f"fix it in {source}, then `make check-config`"
    if not source.is_file():
        return None, [f"{source}: no such config file (give a path, e.g. configs/local.yaml)"]
    try:
        document = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        return None, [f"{source}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})"]
    try:
        configs = check_file(source, environ)
    except ConfigError as exc:
        return None, [f"{problem} ({hint})" for problem in exc.problems]
    return Plan(source, document, configs), []


def port_problem(host: str, port: int, fix: str) -> str | None:
    """Whether something already listens on host:port (a TIME_WAIT socket does not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host or '0.0.0.0'} is already in use: {fix}"
            if exc.errno in (errno.EACCES, errno.EPERM):
                return f"port {port} on {host} needs privileges this user lacks: {fix}"
            return f"cannot listen on {host}:{port} ({exc.strerror}): {fix}"
    return None


def port_problems(plan: Plan, fast_path: bool, environ: Mapping[str, str]) -> list[str]:
    http = plan.document.get("http_options") or {}
    host, port = str(http.get("host", "127.0.0.1")), int(http.get("port", 8000))
    fix = (
        f"stop what holds it, or pick another port with PORT={port + 1} make run "
        f"(or http_options.port in {plan.source})"
    )
    problems = [port_problem(host, port, fix)]
    if fast_path:
        for name, default in HAPROXY_PORTS.items():
            other = int(environ.get(name) or default)
            problems.append(
                port_problem(
                    "0.0.0.0",
                    other,
                    f"HAProxy (the fast path) needs it: set {name}=<free port>, "
                    "or GATEWAY_FAST_PATH=off make run",
                )
            )
    return [problem for problem in problems if problem]


def directory_problems(plan: Plan) -> list[str]:
    """Every local model and adapter directory exists and holds what loading needs."""
    problems = []
    for index, config in enumerate(plan.configs):
        where = f"{plan.source} (applications[{index}].args"
        for number, model in enumerate(config.models):
            key = f"{where}.models[{number}].path)"
            problems += _directory_problem(f"model {model.id!r}", model.path, "config.json", key)
        for number, adapter in enumerate(config.adapters.declared):
            key = f"{where}.adapters[{number}].path)"
            name = f"adapter {adapter.id!r}"
            problems += _directory_problem(name, adapter.path, "adapter_config.json", key)
    return problems


def _directory_problem(what: str, path: str, marker: str, key: str) -> list[str]:
    directory = Path(path)
    if directory.is_dir() and (directory / marker).is_file():
        return []
    fix = (
        "train the demo ones with `make demo-model`, or fix the path"
        if "demo" in path
        else ("point the path at a `save_pretrained` directory")
    )
    found = "has no " + marker if directory.is_dir() else "does not exist"
    return [f"{what}: directory {path} {found} (relative to {os.getcwd()}): {fix} in {key}"]


def key_problems(plan: Plan, environ: Mapping[str, str]) -> list[str]:
    """Providers marked `required: true` whose key variable is empty."""
    problems = []
    for index, config in enumerate(plan.configs):
        if config.commercial is None:
            continue
        for name in ("openai", "anthropic"):
            provider = config.commercial.provider(name)
            if provider.enabled and provider.required and not environ.get(provider.api_key_env):
                problems.append(
                    f"{provider.api_key_env} is not set but commercial.{name}.required is true "
                    f"in {plan.source} (applications[{index}].args): export "
                    f"{provider.api_key_env}=... or set commercial.{name}.required: false"
                )
    return problems
