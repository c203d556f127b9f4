"""Scale-out on the session's two-node cluster: fractional GPUs on the worker's logical GPU,
placement by custom resource, a killed replica replaced by Serve."""

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GPU_NODE_RESOURCE

pytestmark = pytest.mark.integration


def small_model(model_id: str, path: Path, **options: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "path": str(path),
        "num_cpus": 0.05,
        "max_new_tokens": 32,
        "defaults": {"temperature": 0.0, "max_tokens": 4},
        **options,
    }


def deploy_without_waiting(args: dict[str, Any], name: str) -> None:
    from ray import serve

    from serve_app.runtime.builder import build_app

    serve._run(build_app(args), name=name, route_prefix=f"/{name}", _blocking=False)


def wait_for(check: Any, timeout_s: float, interval_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except httpx.HTTPError:
            result = None
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval_s)


def deployment_status(app: str, deployment: str) -> Any:
    from ray import serve

    application = serve.status().applications.get(app)
    return application.deployments.get(deployment) if application else None


@pytest.fixture(scope="module")
def gpu_app(
    gateway: str, random_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Three models asking for half a GPU each on a cluster with one (logical) GPU."""
    from ray import serve

    ledger = tmp_path_factory.mktemp("gpu") / "usage.db"
    args = {
        "auth": {"enabled": False},
        "ingress": {"num_cpus": 0.05, "status_probe_timeout_s": 1},
        "models": [
            small_model("half-a", random_model_dir, num_gpus=0.5),
            small_model("half-b", random_model_dir, num_gpus=0.5),
            small_model("half-c", random_model_dir, num_gpus=0.5),
        ],
        "ledger": {"url": f"sqlite:///{ledger}"},
    }
    deploy_without_waiting(args, "gpu")
    base = f"{gateway}/gpu"
    assert wait_for(
        lambda: all(
            (state := deployment_status("gpu", name)) and state.status.value == "HEALTHY"
            for name in ("Gateway", "half-a", "half-b")
        ),
        120,
    ), "the two half-GPU models did not start"
    yield base
    serve.delete("gpu")


def test_two_half_gpu_models_share_gpu_0(gpu_app: str, ray_cluster: dict[str, Any]) -> None:
    placements = []
    for name in ("half-a", "half-b"):
        info = httpx.get(f"{gpu_app}/api/v1/models/{name}", timeout=30).json()
        assert info["status"] == "available"
        placements.append(info["metadata"])
    for metadata in placements:
        assert metadata["placement"]["cuda_visible_devices"] == "0"
        assert metadata["placement"]["node_id"] == ray_cluster["gpu_node_id"]
        assert metadata["device"] == "cpu"  # a logical GPU: the model loads on the CPU
    assert placements[0]["placement"]["pid"] != placements[1]["placement"]["pid"]


def test_a_model_that_does_not_fit_is_pending_and_reported(gpu_app: str) -> None:
    state = deployment_status("gpu", "half-c")
    assert state is not None and state.status.value != "HEALTHY"
    ready = httpx.get(f"{gpu_app}/api/v1/ready", timeout=30)
    assert ready.status_code == 503
    reason = ready.json()["not_ready"]["half-c"]
    assert "half-c" in reason and "'GPU': 0.5" in reason
    status = httpx.get(f"{gpu_app}/api/v1/status", timeout=30).json()
    by_id = {model["id"]: model for model in status["models"]}
    assert by_id["half-c"]["state"] == "unavailable" and "GPU" in by_id["half-c"]["reason"]
    assert by_id["half-a"]["state"] == "available"
    # The models that fit keep serving.
    answer = httpx.post(
        f"{gpu_app}/api/v1/generate",
        json={"prompt": "Q: hello\nA:", "model_id": "half-b", "max_tokens": 3},
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["metrics"]["output_tokens"] == 3


@pytest.fixture(scope="module")
def placed_app(
    gateway: str, random_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A model that must run where the custom resource is (the worker node)."""
    from ray import serve

    from serve_app.runtime.builder import build_app

    ledger = tmp_path_factory.mktemp("placed") / "usage.db"
    args = {
        "auth": {"enabled": False},
        "ingress": {"num_cpus": 0.05, "status_probe_timeout_s": 1},
        "models": [small_model("placed", random_model_dir, resources={GPU_NODE_RESOURCE: 0.01})],
        "ledger": {"url": f"sqlite:///{ledger}"},
    }
    serve.run(build_app(args), name="placed", route_prefix="/placed")
    yield f"{gateway}/placed"
    serve.delete("placed")


async def _load(base: str, count: int) -> list[httpx.Response | Exception]:
    body = {"prompt": "Q: hello\nA:", "model_id": "placed", "max_tokens": 16}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        calls = [client.post("/api/v1/generate", json=body) for _ in range(count)]
        return list(await asyncio.gather(*calls, return_exceptions=True))


def test_killed_replica_on_the_worker_node_is_replaced(
    placed_app: str, gateway: str, ray_cluster: dict[str, Any]
) -> None:
    info = httpx.get(f"{placed_app}/api/v1/models/placed", timeout=30).json()
    placement = info["metadata"]["placement"]
    assert placement["node_id"] == ray_cluster["gpu_node_id"]

    async def kill_under_load() -> list[httpx.Response | Exception]:
        load = asyncio.create_task(_load(placed_app, 12))
        await asyncio.sleep(0.3)
        os.kill(placement["pid"], signal.SIGKILL)
        return await load

    results = asyncio.run(kill_under_load())
    for result in results:  # in-flight requests: an answer or a clean error, never a hang
        assert isinstance(result, httpx.Response), result
        assert result.status_code in (200, 502, 503, 504), result.text
        assert "x-request-id" in result.headers
        if result.status_code != 200:
            assert result.json()["error"]["type"]
    # The rest of the cluster keeps serving meanwhile.
    other = httpx.post(
        f"{gateway}/api/v1/generate",
        json={"prompt": "Q: What is the capital of Zorvia?\nA:", "model_id": "demo"},
        timeout=60,
    )
    assert other.status_code == 200
    replaced = wait_for(
        lambda: (
            httpx.get(f"{placed_app}/api/v1/ready", timeout=10).status_code == 200
            and httpx.get(f"{placed_app}/api/v1/models/placed", timeout=10).json()["metadata"][
                "placement"
            ]["pid"]
            != placement["pid"]
        ),
        90,
    )
    assert replaced, "Serve did not replace the killed replica"
    # Every ingress router learns of the new replica within a few seconds.
    served = wait_for(lambda: _all_ok(asyncio.run(_load(placed_app, 4))), 30, interval_s=1)
    assert served, "requests kept failing after the replica was replaced"


def _all_ok(results: list[httpx.Response | Exception]) -> bool:
    return all(isinstance(r, httpx.Response) and r.status_code == 200 for r in results)
