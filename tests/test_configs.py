"""Every shipped Serve config validates as `llm-gateway-check-config` would check it, and
configs/gpu.yaml shares one GPU between its models through fractional num_gpus."""

from pathlib import Path

import pytest
from ray.serve.schema import ServeDeploySchema

from serve_app.runtime.config_check import ConfigError, check_file, main
from tests.deploy_checks import ROOT, serve_config

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
ADMIN_KEY = "admin-key-for-the-test-0123456789"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("APP_ENV", "CORS_ORIGINS", "LEDGER_URL", "RATE_LIMIT_URL", "LOG_LEVEL"):
        monkeypatch.delenv(variable, raising=False)  # the file alone decides
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", ADMIN_KEY)
    if "url_env: LEDGER_URL" in path.read_text():  # the database comes from the environment
        monkeypatch.setenv("LEDGER_URL", "postgresql://gateway:pw@db.internal:5432/gateway")
    configs = check_file(path)
    assert configs
    assert main([str(path)]) == 0  # the console script's answer too


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_a_production_config_refuses_to_start_without_the_admin_key(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APP_ENV", raising=False)
    monkeypatch.delenv("GATEWAY_ADMIN_KEY", raising=False)
    environments = {app["args"].get("environment") for app in serve_config(path)["applications"]}
    if "production" not in environments:
        check_file(path)
        return
    with pytest.raises(ConfigError, match="GATEWAY_ADMIN_KEY"):
        check_file(path)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_is_a_serve_deploy_config(path: Path) -> None:
    """What `serve deploy` (and KubeRay, through the dashboard) checks before deploying."""
    schema = ServeDeploySchema.model_validate(serve_config(path))
    assert schema.applications


def test_there_are_configs_to_check() -> None:
    assert {"local.yaml", "production.yaml", "gpu.yaml"} <= {p.name for p in CONFIGS}


def test_gpu_yaml_shares_the_gpu_between_three_deployments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", ADMIN_KEY)
    (config,) = check_file(ROOT / "configs" / "gpu.yaml")
    gpus = {model.id: model.num_gpus for model in config.models}
    assert gpus == {"demo": 0.5, "demo-b": 0.25, "demo-small": 0.25}
    for model in config.models:
        assert model.device == "auto" and model.dtype == "auto", model.id
    assert config.auth.enabled and config.auth.admin_key_env == "GATEWAY_ADMIN_KEY"
    assert config.commercial is not None and config.commercial.models
