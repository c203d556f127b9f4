"""The classes Serve deploys for local models: no torch where the graph is built, and every
call reaches the engine's server built in the replica."""

import subprocess
import sys
from typing import Any

from deployments.engine.entry import LocalModelDeployment, _EngineDeployment

BUILD_WITHOUT_TORCH = """
import sys
from serve_app.runtime.builder import bind_graph
from serve_app.runtime.config_check import validate_args
models = [{"id": "m", "path": "x"}, {"id": "e", "path": "y", "task": "embed"}]
bind_graph(validate_args({"models": models}))
loaded = sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules)
print(",".join(loaded))
"""


def test_binding_local_models_imports_no_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD_WITHOUT_TORCH], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


class Recorder:
    def __init__(self, config: dict[str, Any], paths: dict[str, str], **options: Any) -> None:
        self.built_with = (config, paths, options)
        self.batching: dict[str, Any] = {}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.batching = user_config

    async def describe(self) -> dict[str, Any]:
        return {"id": self.built_with[0]["id"]}


class RecorderDeployment(_EngineDeployment):
    SERVER = (__name__, "Recorder")


def test_the_stand_in_builds_the_server_and_forwards_to_it() -> None:
    import asyncio

    deployment = RecorderDeployment({"id": "m"}, {"a": "/p"}, adapter_sync_s=5.0)
    assert deployment.built_with == ({"id": "m"}, {"a": "/p"}, {"adapter_sync_s": 5.0})
    deployment.reconfigure({"mode": "static"})
    assert deployment._server.batching == {"mode": "static"}
    assert asyncio.run(deployment.describe()) == {"id": "m"}
    assert LocalModelDeployment.SERVER == ("deployments.engine.server", "LocalModelServer")
