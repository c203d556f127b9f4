"""cluster.yaml passes Ray's own cluster-launcher validation and deploys production.yaml
onto the node types it declares."""

import copy
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.deploy_checks import (
    ROOT,
    gateway_args,
    module_path,
    modules_run_by,
    pinned_python_tag,
    pinned_ray_series,
    ray_image_version,
    serve_config,
)

PRODUCTION = ROOT / "configs" / "production.yaml"


@pytest.fixture
def cluster() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    return config


def test_cluster_yaml_is_valid_for_ray_up(cluster: dict[str, Any]) -> None:
    validate_config(prepare_config(copy.deepcopy(cluster)))  # fills defaults as `ray up` does


def test_the_validation_rejects_a_broken_config(cluster: dict[str, Any]) -> None:
    cluster["head_node_type"] = "no_such_node_type"
    with pytest.raises((ValueError, RuntimeError)):
        validate_config(prepare_config(cluster))


def test_the_validation_rejects_an_unknown_key(cluster: dict[str, Any]) -> None:
    cluster["available_node_types"]["gpu_worker"]["resource"] = {"gpu_node": 1}
    with pytest.raises(Exception, match="resource"):
        validate_config(prepare_config(cluster))


def test_node_types_head_cpu_and_gpu_workers(cluster: dict[str, Any]) -> None:
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]["resources"]
    assert head.get("GPU", 0) == 0 and "gpu_node" not in head
    assert head.get("CPU", 1) > 0, "the head must have CPUs left for the ingress and proxies"
    assert "gpu_node" not in types["cpu_worker"]["resources"]
    assert types["gpu_worker"]["resources"]["gpu_node"] == 1
    for name, node_type in types.items():
        if name != cluster["head_node_type"]:
            assert 0 <= node_type["min_workers"] <= node_type["max_workers"]


def test_every_gpu_model_can_only_land_on_a_node_that_advertises_its_resources(
    cluster: dict[str, Any],
) -> None:
    advertised = {
        name: node_type.get("resources", {})
        for name, node_type in cluster["available_node_types"].items()
    }
    models = [model for args in gateway_args(serve_config(PRODUCTION)) for model in args["models"]]
    assert any(model.get("num_gpus", 0) > 0 for model in models)
    for model in models:
        if model.get("num_gpus", 0) == 0:
            continue
        assert model.get("resources"), f"{model['id']} may be placed on a node without a GPU"
        hosts = [
            name
            for name, resources in advertised.items()
            if all(resources.get(key, 0) >= amount for key, amount in model["resources"].items())
        ]
        assert hosts == ["gpu_worker"], (model["id"], hosts)


def test_the_head_starts_ray_then_deploys_production_yaml(cluster: dict[str, Any]) -> None:
    commands = cluster["head_start_ray_commands"]
    starts = [i for i, command in enumerate(commands) if "ray start --head" in command]
    deploys = [
        i for i, command in enumerate(commands) if "serve deploy configs/production.yaml" in command
    ]
    assert starts and deploys and starts[0] < deploys[0]
    assert (
        ROOT / cluster["file_mounts"]["/home/ray/llm-gateway"] / "configs/production.yaml"
    ).is_file()


def test_every_node_starts_ray_with_token_auth_and_the_secrets(cluster: dict[str, Any]) -> None:
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(command for command in cluster[key] if "ray start" in command)
        assert "RAY_AUTH_MODE=token ray start" in start, key
        assert ". /home/ray/llm-gateway.env" in start, key
    deploy = next(c for c in cluster["head_start_ray_commands"] if "serve deploy" in c)
    assert "RAY_AUTH_MODE=token" in deploy
    # the schema is upgraded (with LEDGER_URL from the secrets) before the gateway starts
    assert deploy.index(". /home/ray/llm-gateway.env") < deploy.index("llm-gateway db upgrade")
    assert deploy.index("llm-gateway db upgrade") < deploy.index("serve deploy")
    mounts = cluster["file_mounts"]
    assert mounts["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    assert "/home/ray/llm-gateway.env" in mounts


def test_the_image_is_the_pinned_ray_and_python(cluster: dict[str, Any]) -> None:
    version, python = ray_image_version(cluster["docker"]["image"])
    assert version.rsplit(".", 1)[0] == pinned_ray_series()
    assert python == pinned_python_tag()


def test_setup_commands_run_modules_that_exist(cluster: dict[str, Any]) -> None:
    modules = [m for command in cluster["setup_commands"] for m in modules_run_by(command)]
    assert "deployments.demo.model" in modules
    missing = [module for module in modules if module_path(module) is None]
    assert not missing, f"setup_commands run modules the repository lacks: {missing}"
