"""Settings from the environment, applied over the YAML args before validation, and the
start-up refusals of the production environment.

Read when the app is built (never at import): `APP_ENV`, `CORS_ORIGINS` (comma-separated),
`LEDGER_URL`, `RATE_LIMIT_URL` (switches rate limits to Redis), `CACHE_REDIS_URL` (the
response cache's Redis, when `cache.backend` is redis and the YAML gives no URL), `LOG_LEVEL`,
`MODEL_CACHE_SIZE` (LoRA adapters loaded per replica, for models whose YAML sets none).
Provider keys (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`) and the admin key (`GATEWAY_ADMIN_KEY`)
are read by the replicas themselves; `PORT` by `serve_app/runtime/launch.py`.
"""

import copy
from collections.abc import Mapping
from typing import Any

from serve_app.accounting.db import DatabaseUrlError, is_sqlite, parse_database_url
from serve_app.contracts.config import GatewayConfig

DEFAULT_PROXY_LOCATION = "EveryNode"  # Ray Serve's default


def _set(args: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = args
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def apply_environment(args: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """A copy of `args` with the environment's settings written over it."""
    merged = copy.deepcopy(args or {})
    if environ.get("APP_ENV"):
        _set(merged, ("environment",), environ["APP_ENV"].strip().lower())
    if environ.get("CORS_ORIGINS") is not None and "CORS_ORIGINS" in environ:
        origins = [o.strip() for o in environ["CORS_ORIGINS"].split(",") if o.strip()]
        _set(merged, ("security", "cors_origins"), origins)
    url_env = (merged.get("ledger") or {}).get("url_env") or "LEDGER_URL"
    if environ.get(url_env):
        _set(merged, ("ledger", "url"), environ[url_env])
    if environ.get("RATE_LIMIT_URL"):
        _set(merged, ("rate_limits", "backend"), "redis")
        _set(merged, ("rate_limits", "redis_url"), environ["RATE_LIMIT_URL"])
    cache = merged.get("cache")
    if environ.get("CACHE_REDIS_URL") and isinstance(cache, dict) and not cache.get("redis_url"):
        cache["redis_url"] = environ["CACHE_REDIS_URL"]
    if environ.get("LOG_LEVEL"):
        _set(merged, ("logging", "level"), environ["LOG_LEVEL"].upper())
    if environ.get("MODEL_CACHE_SIZE"):
        for model in merged.get("models") or []:
            if isinstance(model, dict):
                model.setdefault("model_cache_size", environ["MODEL_CACHE_SIZE"].strip())
    return merged


def ledger_url_problem(config: GatewayConfig, environ: Mapping[str, str]) -> str | None:
    """Why the database URL can't be used (naming LEDGER_URL when it came from there, never
    its password)."""
    url_env = config.ledger.url_env
    if url_env and not environ.get(url_env):
        return f"{url_env} is not set: it must hold the database URL (postgresql://…)"
    setting = url_env or "LEDGER_URL" if environ.get(url_env or "LEDGER_URL") else "ledger.url"
    try:
        parse_database_url(config.ledger.url, setting)
    except DatabaseUrlError as exc:
        return str(exc)
    return None


def several_ingresses(config: GatewayConfig, proxy_location: str | None) -> list[str]:
    """What can put more than one ingress replica (each with its own SQLite file) to work."""
    reasons = []
    if config.ingress.autoscaling is not None:
        reasons.append("ingress.autoscaling is set")
    elif config.ingress.num_replicas > 1:
        reasons.append(f"ingress.num_replicas is {config.ingress.num_replicas}")
    if proxy_location == "EveryNode":
        reasons.append("proxy_location is EveryNode")
    return reasons


def production_problems(
    config: GatewayConfig, environ: Mapping[str, str], proxy_location: str | None = None
) -> list[str]:
    """Why a production gateway must not start, each naming the setting to fix.

    `proxy_location`: the Serve config's, when known (None: not known, not checked)."""
    if config.environment != "production":
        return []
    problems = []
    reasons = several_ingresses(config, proxy_location)
    if is_sqlite(config.ledger.url) and reasons:
        problems.append(
            "ledger.url / LEDGER_URL is SQLite, but there can be more than one ingress replica "
            f"({', '.join(reasons)}): each node would keep its own keys and usage; set "
            "LEDGER_URL to one postgresql:// database"
        )
    if not config.auth.enabled:
        problems.append("auth.enabled is false: production requires API keys")
    if "*" in config.security.cors_origins:
        problems.append("CORS_ORIGINS / security.cors_origins contains '*': list the origins")
    if not environ.get(config.auth.admin_key_env):
        problems.append(f"{config.auth.admin_key_env} is not set: production needs an admin key")
    return problems
