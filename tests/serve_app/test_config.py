"""Config validation: strict keys named with their file, defaults, catalog resolution."""

from pathlib import Path

import pytest
import yaml

from serve_app.config_check import ConfigError, check_file, main, validate_args

CONFIGS = sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    assert check_file(path, {"GATEWAY_ADMIN_KEY": "admin-secret"})


def test_production_refuses_unsafe_settings_naming_them() -> None:
    production = CONFIGS[[p.name for p in CONFIGS].index("production.yaml")]
    with pytest.raises(ConfigError, match="GATEWAY_ADMIN_KEY"):
        check_file(production, {})
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        check_file(production, {"GATEWAY_ADMIN_KEY": "k", "CORS_ORIGINS": "*"})
    with pytest.raises(ConfigError, match=r"auth\.enabled"):
        validate_args(
            {"environment": "production", "auth": {"enabled": False}},
            "x",
            {"GATEWAY_ADMIN_KEY": "k"},
        )


def test_environment_variables_override_the_yaml() -> None:
    config = validate_args(
        {},
        "x",
        {
            "APP_ENV": "testing",
            "CORS_ORIGINS": "https://a, https://b",
            "LEDGER_URL": "sqlite:///tmp/x.db",
            "RATE_LIMIT_URL": "redis://127.0.0.1:1/0",
        },
    )
    assert config.environment == "testing"
    assert config.security.cors_origins == ["https://a", "https://b"]
    assert config.ledger.url == "sqlite:///tmp/x.db"
    assert config.rate_limits.backend == "redis"


def test_unknown_key_is_named_with_its_path_and_file(tmp_path: Path) -> None:
    document = {
        "applications": [
            {
                "import_path": "serve_app.builder:build_app",
                "args": {"models": [{"id": "demo", "path": "m", "batchin": {}}]},
            }
        ]
    }
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as raised:
        check_file(config)
    message = str(raised.value)
    assert "models.0.batchin: unknown key" in message
    assert str(config) in message
    assert main([str(config)]) == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"models": [{"id": "a", "path": "m"}, {"id": "a", "path": "m"}]}, "declared twice"),
        ({"models": [{"id": "openai", "path": "m"}]}, "reserved"),
        ({"models": [{"id": "bad id", "path": "m"}]}, "models.0.id"),
        ({"models": [{"id": "a", "path": "m", "num_gpus": -1}]}, "num_gpus"),
        ({"ingress": {"max_ongoing_requests": 0}}, "ingress.max_ongoing_requests"),
        (
            {
                "models": [
                    {"id": "a", "path": "m", "autoscaling": {"min_replicas": 3, "max_replicas": 2}}
                ]
            },
            "min_replicas",
        ),
        ({"commercial": {"openai": {"rpm": 0}}}, "commercial.openai.rpm"),
    ],
)
def test_invalid_values_are_rejected(args: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        validate_args(args, "test.yaml")
    assert fragment in str(raised.value)


def test_commercial_catalog_merges_defaults_and_overrides() -> None:
    config = validate_args(
        {
            "commercial": {
                "models": [
                    {
                        "id": "gpt-4o",
                        "provider": "openai",
                        "upstream_model": "gpt-4o-2024-08-06",
                        "price": {"input_per_million_usd": 9},
                        "context_window": 10,
                        "max_output_tokens": 5,
                    }
                ]
            }
        }
    )
    assert config.commercial is not None
    models = {m.id: m for m in config.commercial.models}
    assert models["gpt-4o"].upstream_model == "gpt-4o-2024-08-06"
    assert models["gpt-4o-mini"].price.as_of is not None
    assert config.commercial.openai.rpm == 60 and config.commercial.anthropic.rpm == 50
    assert config.commercial.anthropic.api_key_env == "ANTHROPIC_API_KEY"


def test_local_and_commercial_ids_may_not_clash() -> None:
    with pytest.raises(ConfigError, match="gpt-4o"):
        validate_args({"models": [{"id": "gpt-4o", "path": "m"}], "commercial": {}})


def test_replica_options_for_serve() -> None:
    config = validate_args(
        {
            "models": [
                {"id": "a", "path": "m", "autoscaling": {"min_replicas": 1, "max_replicas": 3}}
            ]
        }
    )
    options = config.models[0].serve_options()
    assert "num_replicas" not in options
    assert options["autoscaling_config"]["max_replicas"] == 3
