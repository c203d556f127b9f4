"""Facts the deployment artefacts must agree on, read from the files that define them.

Used by the tests of cluster.yaml, the Dockerfile and the KubeRay manifest.
"""

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PYTHON_MODULE_RUN = re.compile(r"\bpython3?\s+-m\s+([A-Za-z_][\w.]*)")


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def project_version() -> str:
    return str(pyproject()["project"]["version"])


def pinned_ray_series() -> str:
    """`2.60` from the `ray[serve]==2.60.*` dependency."""
    for requirement in pyproject()["project"]["dependencies"]:
        match = re.fullmatch(r"ray(?:\[[\w,]+\])?==(\d+\.\d+)\.\*", requirement.replace(" ", ""))
        if match:
            return match.group(1)
    raise AssertionError("pyproject.toml pins no ray[serve]==X.Y.* dependency")


def pinned_python_tag() -> str:
    """`py311` from `requires-python = ">=3.11,<3.12"`."""
    match = re.search(r">=\s*3\.(\d+)", pyproject()["project"]["requires-python"])
    assert match, "requires-python has no lower bound"
    return f"py3{match.group(1)}"


def ray_image_version(image: str) -> tuple[str, str]:
    """(`2.60.0`, `py311`) from `rayproject/ray:2.60.0-py311-gpu`."""
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-(py3\d+)(?:-[\w.]+)?", image)
    assert match, f"not a versioned rayproject/ray image: {image}"
    return match.group(1), match.group(2)


def module_path(module: str) -> Path | None:
    """The repository file `python -m module` would run, if the module is the project's."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__main__.py"):
        if candidate.is_file():
            return candidate
    return None


def modules_run_by(command: str) -> list[str]:
    return PYTHON_MODULE_RUN.findall(command)


def serve_config(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def gateway_args(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The args of every application that runs the gateway's builder."""
    return [
        app.get("args") or {}
        for app in document["applications"]
        if app["import_path"] == "serve_app.builder:build_app"
    ]
