"""The ingress class Serve deploys: binding the graph imports none of the ingress's HTTP,
database or SDK stacks, and the replica's hooks reach the real ingress."""

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from serve_app.runtime.entry import IngressEntry

BIND_WITHOUT_THE_INGRESS = """
import sys
from serve_app.runtime.builder import bind_graph
from serve_app.runtime.config_check import validate_args
commercial = {"openai": {"api_key_env": "K", "rpm": 5}}
bind_graph(validate_args({"models": [{"id": "m", "path": "x"}], "commercial": commercial}))
print(",".join(m for m in ("serve_app.runtime.ingress", "alembic", "openai") if m in sys.modules))
"""


def test_binding_the_graph_does_not_import_the_ingress() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BIND_WITHOUT_THE_INGRESS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


class FakeIngress:
    def __init__(self, config: dict[str, Any], handles: dict[str, Any]) -> None:
        self.built_with = (config, handles)
        self.closed = False

    def __serve_build_asgi_app__(self) -> str:
        return "the app"

    async def __del__(self) -> None:
        self.closed = True


# Serve awaits `__del__` itself; a plain garbage collection of the object only makes the
# coroutine, which Python then reports.
@pytest.mark.filterwarnings("ignore:coroutine '.*__del__' was never awaited")
def test_the_entry_builds_the_ingress_in_the_replica_and_hands_it_serves_hooks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from serve_app.runtime import ingress

    monkeypatch.setattr(ingress, "GatewayIngress", FakeIngress)
    entry = IngressEntry({"environment": "testing"}, {"m": "handle"})
    built: Any = entry.ingress
    assert built.built_with == ({"environment": "testing"}, {"m": "handle"})
    assert entry.__serve_build_asgi_app__() == "the app"
    asyncio.run(entry.__del__())
    assert built.closed
