"""What each running replica of the deployed graph has imported (its `sys.modules`).

Processes that never run a model (the provider proxies, the limiter, the ingress, Serve's
own proxy and controller) must not load torch, transformers or peft, and a provider proxy
loads only its own provider's SDK: memory and start-up time of every replica. In the session
gateway the openai proxy is a deployment and the anthropic one runs in the ingress
(`placement: ingress`), so the ingress holds the anthropic SDK only.
"""

import pytest

pytestmark = pytest.mark.integration

WATCHED = ("torch", "transformers", "peft", "openai", "anthropic")
MODEL_FREE = {"openai", "RateLimiter", "Gateway"}


def loaded_modules(names: tuple[str, ...]) -> dict[str, list[str]]:
    import ray

    found: dict[str, list[str]] = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] != "serve":
            continue
        actor = ray.get_actor(entry["name"], namespace="serve")
        modules = ray.get(
            actor.__ray_call__.remote(
                lambda _self: sorted(m for m in names if m in __import__("sys").modules)
            ),
            timeout=60,
        )
        found[entry["name"]] = modules
    return found


def deployment_of(actor_name: str) -> str | None:
    """`SERVE_REPLICA::gateway#openai#abc` -> `openai`; None for Serve's own actors."""
    if not actor_name.startswith("SERVE_REPLICA::gateway#"):
        return None
    return actor_name.split("#")[1]


def test_only_model_replicas_load_torch_and_each_proxy_only_its_sdk(gateway: str) -> None:
    found = loaded_modules(WATCHED)
    deployments = {deployment_of(name) for name in found}
    assert deployments >= MODEL_FREE, found  # the graph has them all
    assert "demo" in deployments
    for name, modules in found.items():
        deployment = deployment_of(name)
        if deployment is None or deployment in MODEL_FREE:  # Serve's controller and proxy too
            assert not {"torch", "transformers", "peft"} & set(modules), (name, modules)
        if deployment == "openai":
            assert "anthropic" not in modules and "openai" in modules, (name, modules)
        if deployment == "Gateway":  # the anthropic proxy lives here
            assert "openai" not in modules and "anthropic" in modules, (name, modules)
        if deployment == "demo":
            assert "torch" in modules, (name, modules)  # the check can fail
