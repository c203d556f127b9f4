"""`build_app(args) -> Application`: the import_path of every Serve config in `configs/`.

Validates the args strictly, then binds the graph: one deployment per local model, named
after the model id, and the FastAPI ingress holding a handle to each.
"""

from typing import Any

from ray import serve
from ray.serve import Application

from deployments.local_model import LocalModelServer
from serve_app.config import GatewayConfig, LocalModelConfig
from serve_app.config_check import validate_args
from serve_app.ingress import GatewayIngress

INGRESS_NAME = "Gateway"


def local_model_deployment(model: LocalModelConfig) -> Application:
    options = model.serve_options()
    options["ray_actor_options"].update(num_gpus=model.num_gpus, resources=model.resources)
    deployment = serve.deployment(LocalModelServer).options(
        name=model.id,
        user_config=model.batching.model_dump(),
        **options,
    )
    return deployment.bind(model.model_dump(mode="json"))


def bind_graph(config: GatewayConfig) -> Application:
    handles = {model.id: local_model_deployment(model) for model in config.models}
    ingress = serve.deployment(serve.ingress()(GatewayIngress)).options(
        name=INGRESS_NAME, **config.ingress.serve_options()
    )
    return ingress.bind(config.model_dump(mode="json"), handles)


def build_app(args: dict[str, Any]) -> Application:
    return bind_graph(validate_args(args))
