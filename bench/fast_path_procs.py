"""The process side of `bench/check_fast_path.py`: a process tree, what listens (`ss`), and
stopping a process group the way Ctrl-C does, timed."""

import contextlib
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.fast_path_checks import parse_listeners


def tree_of(pid: int) -> list[psutil.Process]:
    """`pid` and every process below it (empty when it is gone)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def listeners() -> list[dict[str, Any]]:
    """Every listening TCP socket of the host (`ss -ltnp`; processes of this user named)."""
    output = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True, timeout=20).stdout
    return parse_listeners(output)


def wait_until(ready: Callable[[], bool], alive: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until `ready()` (polled every 0.5 s); RuntimeError when `alive()` turns false
    or after `timeout_s`."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if not alive():
            raise RuntimeError("the process exited")
        if ready():
            return time.monotonic() - began
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout_s} s")


@dataclass
class Stopped:
    took_s: float
    total: int
    killed: list[str] = field(default_factory=list)


def stop_group(pid: int, signum: int, timeout_s: float) -> Stopped:
    """`signum` to the process group `pid` leads, then the seconds until every process of its
    tree (as it was before the signal) is gone; SIGKILL for those left after `timeout_s`."""
    tree = tree_of(pid)
    began = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)
    _, alive = psutil.wait_procs(tree, timeout=timeout_s)
    stopped = Stopped(time.monotonic() - began, len(tree))
    for process in alive:
        with contextlib.suppress(psutil.Error):
            stopped.killed.append(f"{process.name()} ({process.pid})")
            process.kill()
    return stopped
