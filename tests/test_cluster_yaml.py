"""cluster.yaml passes Ray's own cluster-launcher validation and deploys production.yaml."""

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).parents[1]


def test_cluster_yaml_is_valid_for_ray_up() -> None:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # fills defaults as `ray up` does, then checks
    assert config["available_node_types"]["gpu_worker"]["resources"]["gpu_node"] == 1
    commands = " ".join(config["head_start_ray_commands"])
    assert "serve deploy configs/production.yaml" in commands


def test_the_validation_rejects_a_broken_config() -> None:
    import pytest

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["head_node_type"] = "no_such_node_type"
    with pytest.raises((ValueError, RuntimeError)):
        validate_config(prepare_config(config))
