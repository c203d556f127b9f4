"""The Dockerfile builds on the pinned Ray and Python, copies files that exist (and that
.dockerignore lets through), runs modules that exist, and by default serves a config that
validates and listens where EXPOSE says. No docker needed: the file is read, not built."""

import fnmatch
import json
import re
from pathlib import Path

from serve_app.runtime.config_check import check_file
from tests.deploy_checks import (
    ROOT,
    module_path,
    modules_run_by,
    pinned_python_tag,
    pinned_ray_series,
    project_version,
    ray_image_version,
    serve_config,
)

ADMIN_ENV = {"GATEWAY_ADMIN_KEY": "admin-key-for-the-test-0123456789"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    parsed = []
    for text in logical:
        keyword, _, arguments = text.partition(" ")
        parsed.append((keyword.upper(), arguments.strip()))
    return parsed


def arguments_of(keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions() if name == keyword]


def dockerignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns), "extend this check for ! patterns"
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    # Docker matches a pattern against the path from the context root (`**/` = any depth);
    # a match on a directory excludes everything under it.
    return any(
        fnmatch.fnmatch(Path(prefix).name, pattern.removeprefix("**/"))
        if pattern.startswith("**/")
        else fnmatch.fnmatch(prefix, pattern)
        for pattern in patterns
        for prefix in prefixes
    )


def cmd() -> list[str]:
    (command,) = arguments_of("CMD")
    argv: list[str] = json.loads(command)  # exec form: no shell between Docker and Python
    return argv


def test_the_base_image_is_the_pinned_ray_and_python() -> None:
    (base,) = arguments_of("FROM")
    version, python = ray_image_version(base)
    assert version.rsplit(".", 1)[0] == pinned_ray_series()
    assert python == pinned_python_tag()


def test_the_image_version_label_is_the_project_version() -> None:
    labels = " ".join(arguments_of("LABEL"))
    assert f'org.opencontainers.image.version="{project_version()}"' in labels


def test_copied_files_exist_and_are_not_dockerignored() -> None:
    copies = arguments_of("COPY")
    assert copies
    for arguments in copies:
        words = [w for w in arguments.split() if not w.startswith("--")]
        for source in words[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
    copied = {w for a in copies for w in a.split()[:-1]}
    assert {"pyproject.toml", "serve_app", "deployments", "configs"} <= copied


def test_the_ignore_file_keeps_the_build_context_small() -> None:
    for heavy in (".venv", "models", ".git", "data", "tests/__pycache__"):
        assert dockerignored(heavy), heavy


def test_every_module_it_runs_exists() -> None:
    commands = [*arguments_of("RUN"), " ".join(cmd())]
    modules = [module for command in commands for module in modules_run_by(command)]
    assert {"deployments.demo.model", "serve_app.runtime.launch"} <= set(modules)
    missing = [module for module in modules if module_path(module) is None]
    assert not missing, f"the Dockerfile runs modules the repository lacks: {missing}"


def test_the_default_command_serves_a_valid_config_on_the_exposed_port() -> None:
    argv = cmd()
    assert argv[:3] == ["python", "-m", "serve_app.runtime.launch"] and len(argv) == 4
    config_path = ROOT / argv[3]
    check_file(config_path, ADMIN_ENV)
    http = serve_config(config_path)["http_options"]
    assert http["host"] == "0.0.0.0", "a container must listen beyond its own loopback"
    exposed = {int(port.split("/")[0]) for a in arguments_of("EXPOSE") for port in a.split()}
    assert http["port"] in exposed


def test_models_the_default_config_serves_are_the_ones_the_image_trains() -> None:
    (config_arg,) = cmd()[3:]
    trained = set(re.findall(r"--out\s+(\S+)", " ".join(arguments_of("RUN"))))
    document = serve_config(ROOT / config_arg)
    paths = {m["path"] for app in document["applications"] for m in app["args"]["models"]}
    assert paths and paths <= trained, (paths, trained)
