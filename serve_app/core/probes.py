"""Read-side views of the catalog: model listings, readiness, commercial catalog and probes.

Deployments are asked (with a short deadline) to describe themselves; a deployment that
does not answer is reported as not ready with the reason, and nothing else is affected.
`/ready`, `/status` and the model listing read a snapshot that one background task per
ingress replica refreshes every `ingress.probe_interval_s`: a flood of probes costs no
`describe` call and takes no model request slot.
"""

import asyncio
import contextvars
import logging
import time
from collections.abc import Mapping
from typing import Any

from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.errors import GatewayError
from serve_app.core.catalog import ModelCatalog, ModelRoute
from serve_app.core.handle_calls import call_with_deadline
from serve_app.core.stats import ModelCounters

logger = logging.getLogger("llm_gateway")


class DeploymentProbe:
    def __init__(
        self, config: GatewayConfig, catalog: ModelCatalog, handles: Mapping[str, Any]
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.handles = dict(handles)
        self._metadata: dict[str, dict[str, Any]] = {}
        self._snapshot: dict[str, dict[str, Any]] | None = None
        self._snapshot_ready = asyncio.Event()
        self._replicas: dict[str, dict[str, int]] = {}  # Serve's replica counts, refreshed too
        self._refresher: asyncio.Task[None] | None = None
        self.refreshes = 0  # describe_all rounds run (each: one describe per deployment)

    async def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every deployment's last description; the first call starts the refresher and
        waits for its first round."""
        if self._refresher is None or self._refresher.done():
            # A context of its own: created inside a request, the task would carry Serve's
            # request context, and Serve cancels a request's handle calls when its client
            # goes away (a probe that timed out while the deployments were starting).
            self._refresher = asyncio.get_running_loop().create_task(
                self._refresh_forever(), context=contextvars.Context()
            )
        if self._snapshot is None:
            await self._snapshot_ready.wait()
        assert self._snapshot is not None
        return self._snapshot

    async def _refresh_forever(self) -> None:
        started = time.monotonic()
        while True:
            try:
                self._snapshot, self._replicas = await asyncio.gather(
                    self.describe_all(), self.serve_replicas()
                )
                self.refreshes += 1
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # close(): this task itself is stopped
                # A call inside the round was cancelled from outside this task: a failed
                # round, not the end of probing.
                logger.warning("deployment probe round cancelled from within; next round soon")
            except Exception:  # our bug: logged with its traceback; the last snapshot stays
                logger.exception("deployment probe round failed")
            if self._snapshot is None:  # a failed first round: an empty snapshot
                self._snapshot = {}
            self._snapshot_ready.set()
            await asyncio.sleep(self._next_interval(time.monotonic() - started))

    def _next_interval(self, probing_for_s: float) -> float:
        """`probe_interval_s`, or the start-up interval while some deployment is not
        available yet early in the replica's life (so /ready follows the models closely)."""
        ingress = self.config.ingress
        starting = probing_for_s < ingress.probe_startup_window_s
        snapshot = self._snapshot or {}
        waiting = any(
            snapshot.get(name, {}).get("status") != "available" for name in self._local_names()
        )
        if starting and waiting:
            return min(ingress.probe_startup_interval_s, ingress.probe_interval_s)
        return ingress.probe_interval_s

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    @property
    def timeout_s(self) -> float:
        return self.config.ingress.status_probe_timeout_s

    async def describe(self, deployment: str, handle: Any = None) -> dict[str, Any]:
        """`{"status": "available"|"unavailable", ...}` for one deployment, never raising.

        `handle`: the route's own handle (an adapter's asks a replica that has it loaded)."""
        handle = handle if handle is not None else self.handles[deployment]
        try:
            description = await call_with_deadline(
                handle.describe.remote(), deployment, self.timeout_s
            )
        except GatewayError as error:
            reason = await self.serve_reason(deployment)
            return {"status": "unavailable", "unavailable_reason": reason or error.message}
        if "metadata" in description:
            self._metadata[deployment] = description["metadata"]
        return {"status": "available", **description}

    async def describe_all(self) -> dict[str, dict[str, Any]]:
        names = sorted({route.deployment for route in self.catalog})
        results = await asyncio.gather(*(self.describe(name) for name in names))
        return dict(zip(names, results))

    async def serve_reason(self, deployment: str) -> str | None:
        """`pending_reason` off the event loop, bounded by the probe timeout; None when the
        controller cannot say (it is busy or restarting)."""
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self.pending_reason, deployment), self.timeout_s
            )
        except Exception as exc:  # whatever the controller does, a status probe answers
            logger.info("no Serve status for %s: %r", deployment, exc)
            return None

    def pending_reason(self, deployment: str) -> str | None:
        """What Serve says of a deployment that does not answer (e.g. a replica waiting for
        a GPU), with the resources each replica needs; None outside a Serve replica."""
        from ray import serve
        from ray.serve.context import _get_internal_replica_context

        context = _get_internal_replica_context()
        if context is None:
            return None
        application = serve.status().applications.get(context.app_name)
        state = application.deployments.get(deployment) if application else None
        if state is None:
            return None
        counts = {getattr(key, "value", key): n for key, n in state.replica_states.items()}
        replicas = counts.get("RUNNING", 0)
        message = state.message or f"{replicas} replica(s) running"
        needs = self.replica_needs(deployment)
        return f"deployment {deployment!r} is {state.status.value}: {message}" + (
            f" Each replica needs {needs}." if needs else ""
        )

    def replica_needs(self, deployment: str) -> dict[str, float]:
        for model in self.config.models:
            if model.id == deployment:
                needs = {"CPU": model.num_cpus, "GPU": model.num_gpus, **model.resources}
                return {name: amount for name, amount in needs.items() if amount}
        return {}

    def replica_counts(self) -> dict[str, dict[str, int]]:
        """Replicas per deployment and state (RUNNING, STARTING, ...) as Serve reports them;
        empty outside a Serve replica."""
        from ray import serve
        from ray.serve.context import _get_internal_replica_context

        context = _get_internal_replica_context()
        if context is None:
            return {}
        application = serve.status().applications.get(context.app_name)
        if application is None:
            return {}
        return {
            name: {getattr(key, "value", str(key)): n for key, n in state.replica_states.items()}
            for name, state in application.deployments.items()
        }

    async def serve_replicas(self) -> dict[str, dict[str, int]]:
        """`replica_counts` off the event loop, bounded by the probe timeout ({} on failure)."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.replica_counts), self.timeout_s)
        except Exception as exc:  # whatever the controller does, a status probe answers
            logger.info("no Serve replica counts: %r", exc)
            return {}

    async def model_states(self, counters: Mapping[str, ModelCounters]) -> list[dict[str, Any]]:
        """Each model's state and replica counts (from the snapshot) and this replica's
        counters."""
        descriptions = await self.snapshot()
        replicas = self._replicas
        states = []
        for route in self.catalog:
            counted = counters[route.model_id]
            p50, p95 = counted.latency_percentiles()
            description = descriptions.get(route.deployment, {})
            states.append(
                {
                    "id": route.model_id,
                    "type": route.model_type,
                    "provider": route.provider,
                    "state": description.get("status", "unknown"),
                    "reason": description.get("unavailable_reason"),
                    "requests": counted.requests,
                    "errors": counted.errors,
                    "latency_p50_ms": p50,
                    "latency_p95_ms": p95,
                    "average_batch_size": description.get("average_batch_size"),
                    "deployment": route.deployment,
                    "replicas": replicas.get(route.deployment),
                    "ongoing_requests": description.get("ongoing_requests"),
                    "placement": description.get("placement"),
                }
            )
        return states

    def model_info(self, route: ModelRoute, description: dict[str, Any]) -> dict[str, Any]:
        metadata: dict[str, Any] = dict(self._metadata.get(route.deployment, {}))
        if route.model_type == "commercial":
            metadata = commercial_metadata(route)
        elif description.get("placement"):
            metadata["placement"] = description["placement"]
        if route.adapter is not None:
            metadata["adapter"] = adapter_metadata(route, description)
        if description.get("unavailable_reason"):
            metadata["unavailable_reason"] = description["unavailable_reason"]
        return {
            "id": route.model_id,
            "type": route.model_type,
            "provider": route.provider,
            "description": route.description,
            "status": description.get("status", "unknown"),
            "price": {
                "input_per_million_usd": route.price.input_per_million_usd,
                "output_per_million_usd": route.price.output_per_million_usd,
            },
            "limits": {
                "max_tokens": route.max_tokens_cap,
                "context_length": metadata.get("context_length", route.context_length),
                "max_prompt_chars": self.config.ingress.max_prompt_chars,
                "rpm": route.rpm,
                "tpm": route.tpm,
            },
            "metadata": metadata,
        }

    async def list_models(self, model_type: str | None = None) -> list[dict[str, Any]]:
        descriptions = await self.snapshot()
        return [
            self.model_info(route, descriptions.get(route.deployment, {}))
            for route in self.catalog
            if model_type is None or route.model_type == model_type
        ]

    async def get_model(self, model_id: str) -> dict[str, Any]:
        route = self.catalog.get(model_id)
        return self.model_info(route, await self.describe(route.deployment, route.handle))

    def _local_names(self) -> list[str]:
        return sorted({r.deployment for r in self.catalog if r.model_type == "fine_tuned"})

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Ready when every local model deployment answers; providers never block readiness."""
        local = self._local_names()
        snapshot = await self.snapshot()
        results = [snapshot.get(name, {"status": "unknown"}) for name in local]
        not_ready = {
            name: str(result.get("unavailable_reason"))
            for name, result in zip(local, results)
            if result["status"] != "available"
        }
        return not not_ready, not_ready

    async def test_providers(self) -> list[dict[str, Any]]:
        providers = sorted({r.deployment for r in self.catalog if r.model_type == "commercial"})
        return list(await asyncio.gather(*(self._test_provider(name) for name in providers)))

    async def _test_provider(self, provider: str) -> dict[str, Any]:
        timeout = self.config.ingress.request_timeout_s
        try:
            result: dict[str, Any] = await call_with_deadline(
                self.handles[provider].check_upstream.remote(), provider, timeout
            )
        except GatewayError as error:
            result = {"provider": provider, "reachable": False, "error": error.message}
        return result


def adapter_metadata(route: ModelRoute, description: dict[str, Any]) -> dict[str, Any]:
    """Whether the replica that answered the probe has the adapter loaded (Serve sends an
    adapter's probe to a replica that has it, when one does)."""
    adapters = description.get("adapters") or {}
    loaded = route.adapter in adapters.get("loaded", [])
    return {
        "base_model": route.deployment,
        "alias": f"{route.deployment}:{route.adapter}",
        "loaded": loaded,
        "loaded_on": description.get("placement") if loaded else None,
        "model_cache_size": adapters.get("model_cache_size"),
    }


def commercial_metadata(route: ModelRoute) -> dict[str, Any]:
    price = route.price
    return {
        "upstream_model": route.upstream_model,
        "context_length": route.context_length,
        "price": {
            "input_per_million_usd": price.input_per_million_usd,
            "output_per_million_usd": price.output_per_million_usd,
            "as_of": price.as_of.isoformat() if price.as_of else None,
        },
    }
