"""LoRA fine-tunes over one replica's base model: loaded on demand, evicted LRU, batched together.

`@serve.multiplexed` keeps at most `model_cache_size` adapters per replica (least recently used
evicted) and routes a request for an adapter to a replica that already has it. What it caches
is an `AdapterSlot`; Serve calls the slot's `__del__` on eviction, which removes the adapter's
weights from the model once no in-flight row uses it. Rows of different adapters (and of the
bare base model) share one forward pass through PEFT's `adapter_names`.
"""

import gc
import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import torch

from deployments.demo_adapters import expected_peft_warnings_ignored
from deployments.generation import BatchGenerator

logger = logging.getLogger("ray.serve")
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed batch


class AdapterSlot:
    """What the multiplexer caches for one adapter; unloading it frees the adapter."""

    def __init__(self, host: "AdapterHost", adapter_id: str) -> None:
        self.host = host
        self.adapter_id = adapter_id
        self._released = False

    def __del__(self) -> None:
        # Serve calls this on eviction; garbage collection may call it again later.
        if not self._released:
            self._released = True
            self.host.unload(self.adapter_id)


class AdapterHost:
    """The adapters of one base model on one replica.

    Lock order: `_state` (counts, loaded set) before the engine's `model_lock` (forward
    passes); the model is changed only while both are held.
    """

    def __init__(
        self, engine: BatchGenerator, paths: Mapping[str, str], device: torch.device
    ) -> None:
        self.engine = engine
        self.paths = dict(paths)
        self.device = device
        self._state = threading.Condition()
        self._in_use: Counter[str] = Counter()
        self._loaded: set[str] = set()
        self.loads = 0
        self.unloads = 0

    @property
    def loaded(self) -> list[str]:
        with self._state:
            return sorted(self._loaded)

    def load(self, adapter_id: str) -> AdapterSlot:
        """Load the adapter's weights (blocking: call it in a worker thread)."""
        with self._state:
            self._load_locked(adapter_id)
        return AdapterSlot(self, adapter_id)

    def try_pin(self, adapter_id: str) -> bool:
        """Count a row in flight on a loaded adapter; False when it is not loaded."""
        with self._state:
            if adapter_id not in self._loaded:
                return False
            self._in_use[adapter_id] += 1
            return True

    def load_and_pin(self, adapter_id: str) -> None:
        """For a row whose adapter was evicted between routing and running (blocking)."""
        with self._state:
            self._load_locked(adapter_id)
            self._in_use[adapter_id] += 1

    def unpin(self, adapter_id: str) -> None:
        with self._state:
            self._in_use[adapter_id] -= 1
            if self._in_use[adapter_id] <= 0:
                del self._in_use[adapter_id]
                self._state.notify_all()

    def unload(self, adapter_id: str) -> None:
        """Remove the adapter once no row uses it, and give its memory back (blocking)."""
        with self._state:
            self._state.wait_for(lambda: self._in_use[adapter_id] == 0)
            if adapter_id not in self._loaded:
                return
            with self.engine.model_lock:
                model = self.engine.model
                if len(self._loaded) == 1:
                    self.engine.model = model.unload()  # the bare base model, LoRA layers gone
                else:
                    model.delete_adapter(adapter_id)
            self._loaded.discard(adapter_id)
            self.unloads += 1
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        logger.info("adapter %s unloaded", adapter_id)

    def lora_parameters(self) -> int:
        """Parameters of the LoRA weights in the model now (0 once every adapter is gone)."""
        with self.engine.model_lock:
            named = self.engine.model.named_parameters()
            return sum(p.numel() for name, p in named if "lora_" in name)

    def adapter_names(self, adapter_ids: list[str | None]) -> list[str] | None:
        """The per-row `adapter_names` for a forward pass, or None for a bare base model."""
        with self._state:
            if not self._loaded:
                return None
        return [adapter_id or BASE_ADAPTER for adapter_id in adapter_ids]

    def _load_locked(self, adapter_id: str) -> None:
        if adapter_id in self._loaded:
            return
        path = self.paths[adapter_id]
        from peft import PeftModel

        with self.engine.model_lock:
            model = self.engine.model
            with expected_peft_warnings_ignored():
                if isinstance(model, PeftModel):
                    model.load_adapter(path, adapter_name=adapter_id)
                else:
                    model = PeftModel.from_pretrained(model, path, adapter_name=adapter_id)
            self.engine.model = model.to(self.device).eval()
        self._loaded.add(adapter_id)
        self.loads += 1
        logger.info("adapter %s loaded from %s", adapter_id, path)


AdapterGetter = Callable[[str], Awaitable[AdapterSlot]]


def serve_multiplexed(load: Callable[[str], Awaitable[AdapterSlot]], size: int) -> AdapterGetter:
    """`load` behind `@serve.multiplexed` with this replica's cache size (from the config)."""
    from ray import serve

    async def get_adapter(adapter_id: str) -> AdapterSlot:
        return await load(adapter_id)

    getter: AdapterGetter = serve.multiplexed(max_num_models_per_replica=size)(get_adapter)
    return getter


def replica_placement() -> dict[str, Any]:
    """Where this replica runs (replica id, node, visible GPUs); empty outside Serve."""
    import os

    import ray
    from ray.serve.context import _get_internal_replica_context

    context = _get_internal_replica_context()
    if context is None or not ray.is_initialized():
        return {}
    return {
        "replica_id": context.replica_id.unique_id,
        "node_id": ray.get_runtime_context().get_node_id(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pid": os.getpid(),
    }
