"""Config validation: strict keys named with their file, defaults, catalog resolution."""

from pathlib import Path

import pytest
import yaml

from serve_app.runtime.config_check import ConfigError, check_file, main, validate_args

CONFIGS = sorted(Path(__file__).parents[3].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    environ = {"GATEWAY_ADMIN_KEY": "admin-secret", "LEDGER_URL": "postgresql://gw:pw@db/gw"}
    assert check_file(path, environ)


PG = "postgresql://gateway:hunter2@db.internal:5432/gateway"


def test_production_needs_one_database_from_ledger_url() -> None:
    production = CONFIGS[[p.name for p in CONFIGS].index("production.yaml")]
    with pytest.raises(ConfigError, match="LEDGER_URL is not set"):
        check_file(production, {"GATEWAY_ADMIN_KEY": "k"})
    with pytest.raises(ConfigError, match="LEDGER_URL is SQLite") as error:
        check_file(production, {"GATEWAY_ADMIN_KEY": "k", "LEDGER_URL": "sqlite:////x.db"})
    assert "num_replicas is 2" in str(error.value) and "EveryNode" in str(error.value)
    bad = "mysql://gateway:hunter2@db/gw"
    with pytest.raises(ConfigError, match="LEDGER_URL") as error:
        check_file(production, {"GATEWAY_ADMIN_KEY": "k", "LEDGER_URL": bad})
    assert "hunter2" not in str(error.value)
    (config,) = check_file(production, {"GATEWAY_ADMIN_KEY": "k", "LEDGER_URL": PG})
    assert config.ledger.url == PG and config.auto_migrate() is False


def test_sqlite_is_refused_in_production_with_several_ingresses() -> None:
    base = {"environment": "production", "ledger": {"url": "sqlite:///x.db"}}
    env = {"GATEWAY_ADMIN_KEY": "k"}
    validate_args(base, "x", env, proxy_location="HeadOnly")  # one ingress: allowed
    for args, location, reason in (
        ({**base, "ingress": {"num_replicas": 3}}, "HeadOnly", "num_replicas is 3"),
        ({**base, "ingress": {"autoscaling": {"max_replicas": 2}}}, None, "autoscaling"),
        (base, "EveryNode", "EveryNode"),
    ):
        with pytest.raises(ConfigError, match=reason):
            validate_args(args, "x", env, proxy_location=location)
    validate_args({**base, "environment": "development"}, "x", {}, proxy_location="EveryNode")


def test_key_store_url_must_be_the_ledger_database() -> None:
    with pytest.raises(ConfigError, match="key_store_url"):
        validate_args({"auth": {"key_store_url": "sqlite:///keys.db"}}, "x", {})
    same = validate_args({"auth": {"key_store_url": "sqlite:///data/usage.db"}}, "x", {})
    assert same.ledger.url == "sqlite:///data/usage.db"


def test_production_refuses_unsafe_settings_naming_them() -> None:
    production = CONFIGS[[p.name for p in CONFIGS].index("production.yaml")]
    with pytest.raises(ConfigError, match="GATEWAY_ADMIN_KEY"):
        check_file(production, {"LEDGER_URL": PG})
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        check_file(production, {"GATEWAY_ADMIN_KEY": "k", "CORS_ORIGINS": "*", "LEDGER_URL": PG})
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


# ---- adapters, fallbacks, circuit breaker, MODEL_CACHE_SIZE -------------------------------


def _gpt(model_id: str = "gpt-x", **extra: object) -> dict[str, object]:
    return {
        "id": model_id,
        "provider": "openai",
        "upstream_model": "x",
        "price": {"input_per_million_usd": 1.0},
        "context_window": 100,
        "max_output_tokens": 10,
        **extra,
    }


def _args(
    adapters: list[dict[str, object]] | None = None,
    commercial: list[dict[str, object]] | None = None,
    **demo: object,
) -> dict[str, object]:
    args: dict[str, object] = {
        "models": [{"id": "demo", "path": "m", **demo}, {"id": "other", "path": "m"}],
        "adapters": adapters or [],
    }
    if commercial is not None:
        args["commercial"] = {"include_default_catalog": False, "models": commercial}
    return args


def _shout(**extra: object) -> dict[str, object]:
    return {"id": "demo-shout", "base": "demo", "path": "adapters/shout", **extra}


def test_adapters_validate_and_answer_under_their_alias() -> None:
    from serve_app.core.catalog import ModelCatalog
    from tests.fakes.handles import FakeHandle

    config = validate_args(_args([_shout(fallbacks=["demo"])]), "t", {})
    assert config.adapters.declared[0].base == "demo" and config.adapters.declared[0].price is None
    assert config.local_ids() == {"demo", "other", "demo-shout", "demo:demo-shout"}
    catalog = ModelCatalog.from_config(config, {"demo": FakeHandle(), "other": FakeHandle()})
    assert catalog.get("demo:demo-shout") is catalog.get("demo-shout")
    shout = catalog.get("demo-shout")
    assert (shout.deployment, shout.adapter, shout.fallbacks) == ("demo", "demo-shout", ("demo",))
    assert shout.handle.options_used == {"multiplexed_model_id": "demo-shout"}
    assert {route.model_id for route in catalog} == {"demo", "other", "demo-shout"}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (_args([_shout(base="nope")]), ("demo-shout", "nope")),
        (_args([_shout(id="other")]), ("other", "already a model id")),
        (_args([_shout(id="openai")]), ("openai",)),
        (_args([_shout(), _shout()]), ("demo-shout", "already a model id")),
        (_args([_shout(id="gpt-x")], [_gpt()]), ("gpt-x", "both local and commercial")),
        (_args([_shout(path="")]), ("adapters.declared.0.path",)),
        (_args([_shout(rank=8)]), ("adapters.declared.0.rank: unknown key",)),
    ],
    ids=["unknown-base", "model-id", "reserved", "twice", "commercial-id", "no-path", "extra"],
)
def test_bad_adapters_are_config_errors_naming_them(
    args: dict[str, object], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as raised:
        validate_args(args, "t.yaml", {})
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_a_model_id_equal_to_an_adapter_alias_is_refused() -> None:
    models = [{"id": "demo", "path": "m"}, {"id": "demo:demo-shout", "path": "m"}]
    args = {"models": models, "adapters": [_shout()]}
    with pytest.raises(ConfigError, match="demo:demo-shout"):
        validate_args(args, "t", {})


@pytest.mark.parametrize(
    "args",
    [
        _args(fallbacks=["other", "demo-shout", "demo:demo-shout"], adapters=[_shout()]),
        _args([_shout(fallbacks=["demo", "other"])]),
        _args(commercial=[_gpt(fallbacks=["demo", "gpt-y"]), _gpt("gpt-y", fallbacks=["gpt-x"])]),
    ],
    ids=["local", "adapter", "commercial"],
)
def test_known_fallbacks_are_accepted(args: dict[str, object]) -> None:
    config = validate_args(args, "t", {})
    commercial = config.commercial.models if config.commercial else []
    declared = [m.fallbacks for m in config.models] + [
        a.fallbacks for a in config.adapters.declared
    ]
    assert any(declared + [c.fallbacks for c in commercial])


def test_a_fallback_to_the_shipped_catalog_is_accepted() -> None:
    args = _args(fallbacks=["gpt-4o-mini"])
    args["commercial"] = {}
    config = validate_args(args, "t", {})
    assert config.models[0].fallbacks == ["gpt-4o-mini"]


@pytest.mark.parametrize(
    ("args", "model", "fallback"),
    [
        (_args(fallbacks=["nope"]), "demo", "nope"),
        (_args(fallbacks=["demo"]), "demo", "demo"),
        (_args([_shout(fallbacks=["ghost"])]), "demo-shout", "ghost"),
        (_args([_shout(fallbacks=["demo-shout"])]), "demo-shout", "demo-shout"),
        (_args(commercial=[_gpt(fallbacks=["claude-z"])]), "gpt-x", "claude-z"),
        (_args(commercial=[_gpt(fallbacks=["gpt-x"])]), "gpt-x", "gpt-x"),
        (_args(fallbacks=["gpt-4o-mini"]), "demo", "gpt-4o-mini"),  # no commercial section
    ],
    ids=[
        "unknown",
        "self",
        "adapter-unknown",
        "adapter-self",
        "commercial",
        "commercial-self",
        "no-commercial",
    ],
)
def test_unknown_or_self_fallbacks_are_config_errors(
    args: dict[str, object], model: str, fallback: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        validate_args(args, "t", {})
    assert f"model {model!r}: fallback {fallback!r}" in str(raised.value)


def test_fallback_lists_are_bounded() -> None:
    with pytest.raises(ConfigError, match=r"models\.0\.fallbacks"):
        validate_args(_args(fallbacks=["other"] * 9), "t", {})


def test_circuit_breaker_and_request_timeout_settings() -> None:
    config = validate_args({}, "t", {})
    breaker = config.circuit_breaker
    assert (breaker.enabled, breaker.failure_threshold, breaker.cooldown_s) == (True, 5, 30.0)
    assert config.ingress.request_timeout_s == 120.0
    custom = validate_args(
        {"circuit_breaker": {"enabled": False, "failure_threshold": 2, "cooldown_s": 0.5}},
        "t",
        {},
    )
    assert custom.circuit_breaker.failure_threshold == 2
    for bad, fragment in [
        ({"circuit_breaker": {"failure_threshold": 0}}, "circuit_breaker.failure_threshold"),
        ({"circuit_breaker": {"cooldown_s": 0}}, "circuit_breaker.cooldown_s"),
        ({"circuit_breaker": {"half_open_calls": 2}}, "circuit_breaker.half_open_calls"),
        ({"ingress": {"request_timeout_s": 0}}, "ingress.request_timeout_s"),
    ]:
        with pytest.raises(ConfigError) as raised:
            validate_args(bad, "t", {})
        assert fragment in str(raised.value)


def test_model_cache_size_comes_from_the_environment_unless_the_yaml_sets_it() -> None:
    args = _args([_shout()])
    args["models"][1]["model_cache_size"] = 7  # type: ignore[index]
    assert [m.model_cache_size for m in validate_args(args, "t", {}).models] == [3, 7]
    config = validate_args(args, "t", {"MODEL_CACHE_SIZE": " 12 "})
    assert [m.model_cache_size for m in config.models] == [12, 7]
    assert args["models"][0] == {"id": "demo", "path": "m"}  # type: ignore[index]
    for bad in ("0", "many", "257"):
        with pytest.raises(ConfigError, match=r"models\.0\.model_cache_size"):
            validate_args(args, "t", {"MODEL_CACHE_SIZE": bad})


def test_providers_run_in_the_ingress_unless_placed_in_a_deployment() -> None:
    config = validate_args({"commercial": {}})
    assert config.commercial is not None
    assert config.commercial.openai.placement == "ingress"
    separate = {"placement": "deployment", "autoscaling": None, "num_replicas": 3}
    config = validate_args({"commercial": {"anthropic": separate}})
    assert config.commercial is not None
    assert config.commercial.anthropic.serve_options()["num_replicas"] == 3
    # Re-validating the dumped config (what each replica does) keeps it valid.
    validate_args(config.model_dump(mode="json"))


@pytest.mark.parametrize(
    "fields",
    [{"autoscaling": None}, {"num_replicas": 2}, {"num_cpus": 1, "max_queued_requests": 5}],
)
def test_replica_fields_of_a_provider_in_the_ingress_are_config_errors(
    fields: dict[str, object],
) -> None:
    with pytest.raises(ConfigError) as error:
        validate_args({"commercial": {"openai": fields}})
    message = str(error.value)
    assert "commercial.openai" in message and "placement: deployment" in message
    for name in fields:
        assert name in message
