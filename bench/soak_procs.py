"""The soak's processes: the fake upstream and `serve run` (started in their own process
groups, stopped with SIGTERM), and the memory of every Ray process (psutil).
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import psutil
import yaml

from bench.soak_stats import ProcSample

REPO = Path(__file__).resolve().parent.parent
RAY_BINARIES = {"raylet": "raylet", "gcs_server": "gcs_server"}
RAY_SCRIPTS = {  # python entry points Ray starts, by the file name in their command line
    "dashboard.py": "dashboard",
    "agent.py": "dashboard_agent",
    "log_monitor.py": "log_monitor",
    "monitor.py": "monitor",
    "default_worker.py": "worker",
    "runtime_env/agent/main.py": "runtime_env_agent",
}


def process_label(name: str, cmdline: Sequence[str]) -> str | None:
    """A readable label for a Ray process (None: not one of Ray's)."""
    first = cmdline[0].strip() if cmdline else ""
    if first.startswith("ray::"):
        return first.split()[0]  # ray::ServeReplica:gateway:demo, ray::ServeController, ...
    if name in RAY_BINARIES:
        return RAY_BINARIES[name]
    if name.startswith("ray-dashboard-"):  # the dashboard's module processes
        return f"dashboard:{name.removeprefix('ray-dashboard-')}"
    if any(Path(part).name == "serve" for part in cmdline[:2]) and "run" in cmdline[1:3]:
        return "serve run (driver)"
    joined = " ".join(cmdline)
    if "/ray/" not in joined:
        return None
    for script, label in RAY_SCRIPTS.items():
        if any(part.endswith(script) for part in cmdline):
            return label
    return None


def _sample(process: psutil.Process, label: str | None = None) -> ProcSample | None:
    try:
        with process.oneshot():
            label = label or process_label(process.name(), process.cmdline())
            if label is None:
                return None
            rss = int(process.memory_info().rss)
        pss: int | None
        try:
            pss = int(getattr(process.memory_full_info(), "pss", 0)) or None
        except (psutil.AccessDenied, OSError):
            pss = None
        return ProcSample(process.pid, label, rss, pss)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None


def sample_ray_processes(root_pid: int | None) -> dict[int, ProcSample]:
    """RSS/PSS of Ray's processes: the tree under `root_pid` (the `serve run` this script
    started; every process in it counts), else every Ray-looking process of this user."""
    if root_pid is not None:
        try:
            root = psutil.Process(root_pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return {}
        samples = (_sample(p) or _sample(p, _fallback(p)) for p in tree)
    else:
        user = psutil.Process().username()
        samples = (_sample(p) for p in psutil.process_iter() if _same_user(p, user))
    return {s.pid: s for s in samples if s is not None}


def fallback_label(name: str, cmdline: Sequence[str]) -> str:
    """A label for a process of the tree that `process_label` does not know, e.g. the
    multiprocessing forkserver the dashboard forks its module processes from."""
    joined = " ".join(cmdline)
    for helper in ("forkserver", "resource_tracker"):
        if f"multiprocessing.{helper}" in joined:
            return f"multiprocessing {helper}"
    return f"other:{name}"


def _fallback(process: psutil.Process) -> str:
    try:
        return fallback_label(process.name(), process.cmdline())
    except psutil.Error:
        return "other"


def _same_user(process: psutil.Process, user: str) -> bool:
    try:
        return bool(process.username() == user)
    except psutil.Error:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render_config(
    document: Mapping[str, Any], port: int, upstream_url: str, ledger_url: str
) -> dict[str, Any]:
    """configs/soak.yaml for this run: its port, the fake upstream, a fresh ledger, and model
    paths made absolute (replicas do not start in the repository)."""
    doc: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(document)))
    doc.setdefault("http_options", {})["port"] = port
    for app in doc.get("applications", []):
        args = app.setdefault("args", {})
        for model in args.get("models", []):
            if not Path(model["path"]).is_absolute():
                model["path"] = str(REPO / model["path"])
        commercial = args.get("commercial") or {}
        if "openai" in commercial:
            commercial["openai"]["base_url"] = f"{upstream_url}/v1"
        if "anthropic" in commercial:
            commercial["anthropic"]["base_url"] = upstream_url
        args.setdefault("ledger", {})["url"] = ledger_url
    return doc


def gateway_env(workdir: Path, admin_key: str, cpus: float) -> dict[str, str]:
    """`serve run`'s environment: no Ray auth, Ray files under `workdir`, small resources,
    fake provider keys, the admin key, and no settings that would override the config."""
    env = {
        k: v for k, v in os.environ.items() if k not in {"LEDGER_URL", "RATE_LIMIT_URL", "APP_ENV"}
    }
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_TMPDIR=str(workdir / "ray"),
        RAY_OVERRIDE_RESOURCES=f'{{"CPU": {cpus}, "object_store_memory": {100 * 2**20}}}',
        OPENAI_API_KEY="sk-fake-openai",
        ANTHROPIC_API_KEY="sk-fake-anthropic",
        GATEWAY_ADMIN_KEY=admin_key,
    )
    return env


class Managed:
    """A process started in its own group, its output in a log file; `stop()` sends SIGTERM
    to the group and waits, then SIGKILLs what is left of the group and of its tree."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str]) -> None:
        self.name, self.log = name, log
        self._log_file: TextIO = log.open("w")
        self.proc = subprocess.Popen(
            list(argv),
            cwd=REPO,
            env=dict(env),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float) -> float:
        """Seconds it took to stop (SIGKILL after `timeout_s`)."""
        started = time.monotonic()
        tree = _tree(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        _, alive = psutil.wait_procs(tree, timeout=max(1.0, timeout_s / 4))
        for process in alive:  # our own children that left the group (e.g. a new session)
            with contextlib.suppress(psutil.Error):
                process.kill()
        self._log_file.close()
        return time.monotonic() - started


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def start_upstream(workdir: Path, delay_ms: float) -> tuple[Managed, str]:
    """The fake provider (tests/fakes/fake_provider.py) on a free loopback port."""
    log = workdir / "fake-provider.log"
    argv = [sys.executable, "-m", "bench.soak_upstream", "--delay-ms", str(delay_ms)]
    proc = Managed("fake provider", argv, log, os.environ)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.alive():
        for line in log.read_text().splitlines():
            if line.startswith("fake provider listening on "):
                return proc, line.rsplit(" ", 1)[1]
        time.sleep(0.1)
    proc.stop(5)
    raise RuntimeError(f"the fake provider did not start:\n{proc.tail()}")


def start_gateway(config: Path, workdir: Path, admin_key: str, cpus: float) -> Managed:
    """`python -m serve_app.runtime.launch config` (what `make run` does: it picks the HTTP path and
    then execs `serve run`) with `gateway_env`."""
    env = gateway_env(workdir, admin_key, cpus)
    command = [sys.executable, "-m", "serve_app.runtime.launch", str(config)]
    return Managed("serve run", command, workdir / "serve.log", env)
