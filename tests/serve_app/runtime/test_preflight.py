"""`serve_app.runtime.preflight`: what `make run` refuses before Ray starts, one line each."""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from serve_app.runtime.preflight import (
    directory_problems,
    key_problems,
    load,
    port_problem,
    port_problems,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture()
def listening() -> Iterator[int]:
    """A port something already listens on (127.0.0.1)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_config(tmp_path: Path, port: int = 8000, **args: Any) -> Path:
    document = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "gateway",
                "route_prefix": "/",
                "import_path": "serve_app.builder:build_app",
                "args": {"auth": {"enabled": False}, **args},
            }
        ],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def model_dir(tmp_path: Path, name: str, marker: str) -> str:
    directory = tmp_path / name
    directory.mkdir()
    (directory / marker).write_text("{}")
    return str(directory)


def test_a_busy_port_names_port_and_the_fix(tmp_path: Path, listening: int) -> None:
    plan, problems = load(write_config(tmp_path, port=listening), {})
    assert plan is not None and problems == []
    [problem] = port_problems(plan, fast_path=False, environ={})
    assert f"port {listening} on 127.0.0.1 is already in use" in problem
    assert f"PORT={listening + 1} make run" in problem and "http_options.port" in problem
    assert "\n" not in problem


def test_a_free_port_is_no_problem() -> None:
    assert port_problem("127.0.0.1", free_port(), "fix") is None


def test_the_fast_path_also_needs_haproxys_ports(tmp_path: Path, listening: int) -> None:
    plan, _ = load(write_config(tmp_path, port=free_port()), {})
    assert plan is not None
    environ = {"RAY_SERVE_HAPROXY_STATS_PORT": str(listening)}
    environ["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(free_port())
    problems = port_problems(plan, fast_path=True, environ=environ)
    assert len(problems) == 1 and "RAY_SERVE_HAPROXY_STATS_PORT=<free port>" in problems[0]
    assert port_problems(plan, fast_path=False, environ=environ) == []


def test_missing_model_and_adapter_directories(tmp_path: Path) -> None:
    present = model_dir(tmp_path, "base", "config.json")
    models = [
        {"id": "base", "path": present},
        {"id": "gone", "path": str(tmp_path / "gone")},
        {"id": "empty", "path": str(tmp_path / "adapterish")},
    ]
    (tmp_path / "adapterish").mkdir()
    adapters = [{"id": "formal", "base": "base", "path": str(tmp_path / "adapters/formal")}]
    plan, problems = load(write_config(tmp_path, models=models, adapters=adapters), {})
    assert plan is not None and problems == []
    found = directory_problems(plan)
    assert len(found) == 3
    assert found[0].startswith(f"model 'gone': directory {tmp_path / 'gone'} does not exist")
    assert "applications[0].args.models[1].path" in found[0]
    assert "has no config.json" in found[1]
    assert found[2].startswith("adapter 'formal':")
    assert "adapters[0].path" in found[2]


def test_demo_directories_point_at_make_demo_model(tmp_path: Path) -> None:
    models = [{"id": "demo", "path": str(tmp_path / "models/demo")}]
    plan, _ = load(write_config(tmp_path, models=models), {})
    assert plan is not None
    [problem] = directory_problems(plan)
    assert "make demo-model" in problem


def test_config_errors_one_line_each_with_file_and_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, ingress={"num_replica": 2}, ledger={"url": 5})
    plan, problems = load(path, {})
    assert plan is None and len(problems) == 2
    assert all("\n" not in p and str(path) in p and "make check-config" in p for p in problems)
    assert any("ingress.num_replica: unknown key" in p for p in problems)
    assert any("ledger.url:" in p for p in problems)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("applications:\n  - name: [unclosed\n")
    plan, problems = load(broken, {})
    assert plan is None and "is not valid YAML" in problems[0]
    plan, problems = load(tmp_path / "nope.yaml", {})
    assert plan is None and "no such config file" in problems[0]


def test_a_required_provider_key_must_be_set(tmp_path: Path) -> None:
    commercial = {"openai": {"required": True}, "anthropic": {"required": False}}
    plan, _ = load(write_config(tmp_path, commercial=commercial), {})
    assert plan is not None
    [problem] = key_problems(plan, {})
    assert problem.startswith("OPENAI_API_KEY is not set but commercial.openai.required is true")
    assert "commercial.openai.required: false" in problem
    assert key_problems(plan, {"OPENAI_API_KEY": "sk-x"}) == []


def test_an_unrequired_missing_key_is_no_problem(tmp_path: Path) -> None:
    plan, _ = load(write_config(tmp_path, commercial={}), {})
    assert plan is not None and key_problems(plan, {}) == []


def test_launch_stops_before_ray_with_one_line(tmp_path: Path, listening: int) -> None:
    """Through `python -m serve_app.runtime.launch`: exit 2, one line, no traceback, no Ray."""
    path = write_config(tmp_path, port=free_port())
    env = {**os.environ, "PORT": str(listening), "GATEWAY_FAST_PATH": "off"}
    done = subprocess.run(
        [sys.executable, "-m", "serve_app.runtime.launch", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cannot start: port {listening} ")
    assert "Traceback" not in done.stderr and done.stdout == ""
