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
    # As serve_app.runtime.launch sets it: one well-formed X-Request-ID per response.
    "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": (
        "serve_app.http.proxy_callback:request_id_middlewares"
    ),
    # Autoscaling decisions within seconds (the defaults push load figures every 10 s).
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
}
# Replicas inherit the environment of the Ray instance the session starts.
PROVIDER_KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-0123456789abcdef",
    "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
}
ADMIN_KEY = "admin-test-key-0123456789"
GPU_NODE_RESOURCE = "gpu_node"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, trained once per test session (about half a minute on 2 cores)."""
    from deployments.demo.model import train_demo_model

    return train_demo_model(tmp_path_factory.mktemp("models") / "demo", num_threads=1)


@pytest.fixture(scope="session")
def embed_model_dir(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo embedding model, derived from the demo model (a second or two)."""
    from deployments.demo.embedding import derive_embedding_model

    return derive_embedding_model(demo_model_dir, tmp_path_factory.mktemp("models") / "embed")


@pytest.fixture(scope="session")
def random_model_dir(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained GPT-2 over the demo tokenizer: greedy decoding runs to max_tokens, which
    is what time-to-first-token and disconnect tests need (the demo model stops at once).
    Its 1024-token context holds rendered tool definitions (the demo tokenizer spends about
    a token per character of JSON), so local tool loops run through the gateway on it."""
    from deployments.demo.model import save_untrained_model

    out = tmp_path_factory.mktemp("models") / "random"
    return save_untrained_model(demo_model_dir, out, n_positions=1024)


@pytest.fixture(scope="session")
def demo_adapters_dir(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo LoRA adapters over `demo_model_dir` as `<dir>/<style>/`; only `formal` is trained
    per session (about 10-15 s on one thread)."""
    from deployments.demo.adapters import train_demo_adapter

    root = tmp_path_factory.mktemp("adapters")
    train_demo_adapter(demo_model_dir, root / "formal", "formal", num_threads=1)
    return root


@pytest.fixture(scope="session")
def untrained_adapter_dir(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random (untrained, non-zero) LoRA adapter over the demo model: a second adapter that
    really changes the output, for multi-adapter batching tests, at no training cost."""
    from deployments.demo.adapters import save_untrained_adapter

    return save_untrained_adapter(demo_model_dir, tmp_path_factory.mktemp("adapters") / "random")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, Any]]:
    """One Ray cluster per session, shut down after it: two Ray nodes on this machine.

    The head node has no GPU (ingress, proxies and the limiter go anywhere); the worker node
    has one *logical* GPU and the custom resource `gpu_node`, like a GPU worker of
    `cluster.yaml`. Serve's HTTP proxy runs on the head only, on a free loopback port.
    """
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    os.environ.update(RAY_ENV)
    os.environ.update(PROVIDER_KEYS)
    os.environ["GATEWAY_ADMIN_KEY"] = ADMIN_KEY
    metrics_port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    # Cluster() records its address under Ray's default temp folder whatever `temp_dir`
    # says, and fails on a fresh machine where that folder does not exist yet.
    from ray._private.utils import get_ray_address_file

    Path(get_ray_address_file(None)).parent.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 6,
            "num_gpus": 0,
            "object_store_memory": 100 * 1024 * 1024,
            "include_dashboard": False,
            "temp_dir": temp_dir,
            "metrics_export_port": metrics_port,
            "_system_config": {"metrics_report_interval_ms": 1000},
        },
    )
    gpu_node = cluster.add_node(
        num_cpus=2,
        num_gpus=1,
        resources={GPU_NODE_RESOURCE: 1},
        object_store_memory=80 * 1024 * 1024,
    )
    ray.init(address=cluster.address, log_to_driver=False)
    port = free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    try:
        yield {
            "port": port,
            "base_url": f"http://127.0.0.1:{port}",
            "metrics_url": f"http://127.0.0.1:{metrics_port}/metrics",
            "temp_dir": temp_dir,
            "cluster": cluster,
            "gpu_node_id": gpu_node.node_id,
        }
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[Any]:
    from tests.fakes.fake_provider import FakeProvider

    with FakeProvider() as provider:
        yield provider


def integration_args(
    model_dir: Path, random_dir: Path, fake: Any, ledger_path: Path, embed_dir: Path | None = None
) -> dict[str, Any]:
    """The one gateway deployed per session: the demo model plus both providers (fake).
    The openai proxy is its own deployment (two replicas); the anthropic proxy runs inside
    the ingress replica (the default placement), so both placements serve every test."""
    fast_provider = {
        "rpm": 10_000,
        "rate_limit_wait_s": 0,
        "max_retries": 2,
        "max_retry_after_s": 2,
        "timeout_s": 5,
    }
    separate = {"placement": "deployment", "num_cpus": 0.1, "autoscaling": None}
    return {
        "ingress": {"num_cpus": 0.1, "max_batch_items": 4, "request_timeout_s": 30},
        "auth": {"enabled": False},
        "models": [
            {
                "id": "demo",
                "path": str(model_dir),
                "description": "demo",
                "max_new_tokens": 64,
                "num_cpus": 0.5,
                "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.2},
                "defaults": {"temperature": 0.0, "max_tokens": 16},
            },
            {
                "id": "random",
                "path": str(random_dir),
                "max_new_tokens": 256,
                "num_cpus": 0.2,
                "defaults": {"temperature": 0.0, "max_tokens": 64},
            },
            *(
                [{"id": "demo-embed", "path": str(embed_dir), "task": "embed", "num_cpus": 0.1}]
                if embed_dir is not None
                else []
            ),
        ],
        "commercial": {
            "openai": {
                **fast_provider,
                **separate,
                "base_url": fake.openai_base_url,
                "num_replicas": 2,
            },
            "anthropic": {
                **fast_provider,
                "base_url": fake.anthropic_base_url,
                "timeout_s": 1.5,
                "max_retries": 1,
            },
            "models": [
                {
                    "id": "gpt-limited",
                    "provider": "openai",
                    "upstream_model": "fake-gpt",
                    "price": {"input_per_million_usd": 1.0, "output_per_million_usd": 2.0},
                    "context_window": 1000,
                    "max_output_tokens": 100,
                    "rpm": 5,
                },
                {  # the only model the response cache serves (tests/integration/test_cache_*)
                    "id": "gpt-cached",
                    "provider": "openai",
                    "upstream_model": "fake-gpt-cached",
                    "price": {"input_per_million_usd": 1.0, "output_per_million_usd": 2.0},
                    "context_window": 1000,
                    "max_output_tokens": 100,
                },
            ],
        },
        "cache": {"enabled": True, "models": ["gpt-cached"]},
        "ledger": {"url": f"sqlite:///{ledger_path}", "flush_interval_s": 0.2},
    }


@pytest.fixture(scope="session")
def ledger_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ledger") / "usage.db"


@pytest.fixture(scope="session")
def gateway(
    ray_cluster: dict[str, Any],
    demo_model_dir: Path,
    random_model_dir: Path,
    fake_provider: Any,
    ledger_path: Path,
    embed_model_dir: Path,
) -> Iterator[str]:
    """Deploy the whole graph once per session (a redeploy costs 6-17 s here)."""
    from ray import serve

    from serve_app.runtime.builder import build_app

    ledger = ledger_path
    args = integration_args(
        demo_model_dir, random_model_dir, fake_provider, ledger, embed_model_dir
    )
    serve.run(build_app(args), name="gateway", route_prefix="/")
    yield ray_cluster["base_url"]
    serve.delete("gateway")
