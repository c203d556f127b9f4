"""`build_app(args) -> Application`: the import_path of every Serve config in `configs/`.

Validates the args strictly, then binds the graph: one deployment per local model (named
after the model id), the shared rate limiter, one autoscaled proxy deployment per commercial
provider with `placement: deployment`, and the FastAPI ingress holding a handle to each
model and provider deployment (providers with `placement: ingress`, the default, are built
inside each ingress replica: `serve_app.runtime.in_process`).
"""

import functools
import logging
from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.deployment import Deployment

from deployments.limits.rate_limiter import RateLimiter
from serve_app.contracts.config import AdapterConfig, GatewayConfig, LocalModelConfig
from serve_app.runtime.config_check import validate_args
from serve_app.runtime.entry import IngressEntry

logger = logging.getLogger("ray.serve")
INGRESS_NAME = "Gateway"
LIMITER_NAME = "RateLimiter"
LIMITER_OPTIONS: dict[str, Any] = {
    "num_replicas": 1,  # the single owner of the shared counters
    "max_ongoing_requests": 1000,
    "ray_actor_options": {"num_cpus": 0.05},
}


def as_deployment(cls: type) -> Deployment:
    """`serve.deployment(cls)`, typed (its overloads confuse type checkers)."""
    deployment: Deployment = serve.deployment(cls)  # type: ignore[assignment]
    return deployment


def local_model_deployment(
    model: LocalModelConfig, adapters: list[AdapterConfig], config: GatewayConfig | None = None
) -> Application:
    """One deployment per base model; its LoRA fine-tunes are multiplexed onto it. With
    `adapters.allowed_roots` set, its replicas also poll the run-time adapters of this base
    (every `auth.cache_ttl_s`) to drop the deleted ones. The bound classes import the engine
    (torch, transformers) in their constructor, on the model replica: the process that
    builds the graph never loads torch."""
    from deployments.engine.entry import LocalEmbeddingDeployment, LocalModelDeployment

    options = model.serve_options()
    options["ray_actor_options"].update(num_gpus=model.num_gpus, resources=model.resources)
    server = LocalEmbeddingDeployment if model.task == "embed" else LocalModelDeployment
    deployment = as_deployment(server).options(
        name=model.id,
        user_config=model.batching.model_dump(),
        **options,
    )
    paths = {adapter.id: adapter.path for adapter in adapters if adapter.base == model.id}
    if model.task == "embed":  # an embedding model takes no adapters
        return deployment.bind(model.model_dump(mode="json"), paths)
    source = None
    if config is not None and config.adapters.allowed_roots:
        from serve_app.access.adapter_store import live_adapter_paths

        source = functools.partial(live_adapter_paths, config.adapter_store_url(), model.id)
    sync_s = config.auth.cache_ttl_s if config is not None else 5.0
    return deployment.bind(
        model.model_dump(mode="json"), paths, adapter_source=source, adapter_sync_s=sync_s
    )


def limiter_deployment() -> Application:
    return as_deployment(RateLimiter).options(name=LIMITER_NAME, **LIMITER_OPTIONS).bind()


def provider_deployments(config: GatewayConfig, limiter: Application) -> dict[str, Application]:
    placed = config.commercial.placed("deployment") if config.commercial is not None else []
    if not placed:
        return {}
    from deployments.providers.proxy import ProviderProxyDeployment

    bound = {}
    for name, provider, models in placed:
        deployment = as_deployment(ProviderProxyDeployment).options(
            name=name, **provider.serve_options()
        )
        bound[name] = deployment.bind(name, provider.model_dump(mode="json"), models, limiter)
    return bound


def needs_shared_limiter(config: GatewayConfig) -> bool:
    limits = config.rate_limits
    per_caller = limits.backend == "ray" and (config.auth.enabled or limits.ip_rpm or limits.ip_tpm)
    return config.commercial is not None or bool(per_caller)


def bind_graph(config: GatewayConfig) -> Application:
    limiter = limiter_deployment() if needs_shared_limiter(config) else None
    handles = {
        model.id: local_model_deployment(model, config.adapters.declared, config)
        for model in config.models
    }
    if limiter is not None:
        handles.update(provider_deployments(config, limiter))
    ingress = as_deployment(serve.ingress()(IngressEntry)).options(
        name=INGRESS_NAME, **config.ingress.serve_options()
    )
    ingress_limiter = limiter if config.rate_limits.backend == "ray" else None
    provider_limiter = limiter if providers_in_ingress(config) else None
    return ingress.bind(config.model_dump(mode="json"), handles, ingress_limiter, provider_limiter)


def providers_in_ingress(config: GatewayConfig) -> bool:
    return config.commercial is not None and bool(config.commercial.placed("ingress"))


def running_proxy_location() -> str | None:
    """The proxy_location of the Serve instance this app is deployed to (it decides whether
    several nodes run an ingress), or None when it can't be told (no Serve running yet)."""
    import ray
    from ray.serve.context import _get_global_client

    if not ray.is_initialized():
        return None
    try:
        client = _get_global_client(raise_if_no_controller_running=False)
        details = client.get_serve_details() if client is not None else {}
    except Exception as exc:  # best effort: the replica-count checks still apply
        logger.info("Serve's proxy_location is unknown at build time: %r", exc)
        return None
    location = details.get("proxy_location")
    return str(getattr(location, "value", location)) if location else None


def build_app(args: dict[str, Any]) -> Application:
    return bind_graph(validate_args(args, proxy_location=running_proxy_location()))
