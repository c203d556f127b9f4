"""Session fixtures: one demo model, one Ray cluster and one deployed gateway per session."""

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_SERVE_LOG_TO_STDERR": "0",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, trained once per test session (about half a minute on 2 cores)."""
    from deployments.demo_model import train_demo_model

    return train_demo_model(tmp_path_factory.mktemp("models") / "demo")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, Any]]:
    """A local Ray instance with Serve on a free loopback port; shut down after the session."""
    import ray
    from ray import serve

    os.environ.update(RAY_ENV)
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    ray.init(
        num_cpus=6,
        num_gpus=0,
        object_store_memory=100 * 1024 * 1024,
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=False,
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield {"port": port, "base_url": f"http://127.0.0.1:{port}"}
    finally:
        serve.shutdown()
        ray.shutdown()
