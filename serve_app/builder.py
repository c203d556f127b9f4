"""`build_app(args) -> Application`: the import_path of every Serve config in `configs/`.

Validates the args strictly, then binds the graph: one deployment per local model (named
after the model id), one autoscaled proxy per commercial provider, the shared rate limiter,
and the FastAPI ingress holding a handle to each model and provider deployment.
"""

from typing import Any

from ray import serve
from ray.serve import Application

from deployments.local_model import LocalModelServer
from deployments.provider_proxy import ProviderProxy
from deployments.rate_limiter import RateLimiter
from serve_app.config import GatewayConfig, LocalModelConfig
from serve_app.config_check import validate_args
from serve_app.ingress import GatewayIngress

INGRESS_NAME = "Gateway"
LIMITER_NAME = "RateLimiter"
LIMITER_OPTIONS: dict[str, Any] = {
    "num_replicas": 1,  # the single owner of the shared counters
    "max_ongoing_requests": 1000,
    "ray_actor_options": {"num_cpus": 0.05},
}


def local_model_deployment(model: LocalModelConfig) -> Application:
    options = model.serve_options()
    options["ray_actor_options"].update(num_gpus=model.num_gpus, resources=model.resources)
    deployment = serve.deployment(LocalModelServer).options(
        name=model.id,
        user_config=model.batching.model_dump(),
        **options,
    )
    return deployment.bind(model.model_dump(mode="json"))


def provider_deployments(config: GatewayConfig) -> dict[str, Application]:
    commercial = config.commercial
    if commercial is None:
        return {}
    limiter = serve.deployment(RateLimiter).options(name=LIMITER_NAME, **LIMITER_OPTIONS).bind()
    bound = {}
    for name in ("openai", "anthropic"):
        provider = commercial.provider(name)
        models = [m.model_dump(mode="json") for m in commercial.models if m.provider == name]
        if not provider.enabled or not models:
            continue
        deployment = serve.deployment(ProviderProxy).options(
            name=name, **provider.serve_options()
        )
        bound[name] = deployment.bind(name, provider.model_dump(mode="json"), models, limiter)
    return bound


def bind_graph(config: GatewayConfig) -> Application:
    handles = {model.id: local_model_deployment(model) for model in config.models}
    handles.update(provider_deployments(config))
    ingress = serve.deployment(serve.ingress()(GatewayIngress)).options(
        name=INGRESS_NAME, **config.ingress.serve_options()
    )
    return ingress.bind(config.model_dump(mode="json"), handles)


def build_app(args: dict[str, Any]) -> Application:
    return bind_graph(validate_args(args))
