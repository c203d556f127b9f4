"""LoRA fine-tunes over one replica's base model: loaded on demand, evicted LRU, batched together.

`@serve.multiplexed` keeps at most `model_cache_size` adapters per replica (least recently used
evicted) and routes a request for an adapter to a replica that already has it. What it caches
is an `AdapterSlot`; Serve calls the slot's `__del__` on eviction, which removes the adapter's
weights from the model once no in-flight row uses it. Rows of different adapters (and of the
bare base model) share one forward pass through PEFT's `adapter_names`.
"""

import contextlib
import dataclasses
import gc
import logging
import threading
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import torch

from deployments.engine.decoding import BatchGenerator

logger = logging.getLogger("ray.serve")
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed batch

# PEFT warnings that are expected for these adapters (see the module docstring): the LoRA on
# the tied wte/lm_head pair is not tied (so never merge these adapters into the base weights),
# and fan_in_fan_out is per module (True for GPT-2's Conv1D, False for wte and lm_head).
EXPECTED_PEFT_WARNINGS = (
    r"Model has `tie_word_embeddings=True` and a tied layer is part of the adapter",
    r"fan_in_fan_out is set to (True|False) but the target module is",
)


@contextlib.contextmanager
def expected_peft_warnings_ignored() -> Iterator[None]:
    """Silence :data:`EXPECTED_PEFT_WARNINGS` (only those) while creating or loading adapters."""
    with warnings.catch_warnings():
        for message in EXPECTED_PEFT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


class AdapterSlot:
    """What the multiplexer caches for one adapter; unloading it frees the adapter."""

    def __init__(self, host: "AdapterHost", adapter_id: str) -> None:
        self.host = host
        self.adapter_id = adapter_id
        self._released = False

    def __del__(self) -> None:
        # Serve calls this on eviction; garbage collection may call it again later. It never
        # waits: an adapter still in use is deleted by whoever releases it last.
        if not self._released:
            self._released = True
            self.host.unload(self.adapter_id)


class AdapterHost:
    """The adapters of one base model on one replica.

    Locks: `_state` guards the counts and sets only (held briefly, also on the event loop);
    `_mutate` serializes loads and deletions; the engine's `model_lock` is held by each
    forward pass and while the model's modules change. Order: `_mutate`, then `model_lock`.
    """

    def __init__(
        self,
        engine: BatchGenerator,
        paths: Mapping[str, str],
        device: torch.device,
        on_unload: Callable[[str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_unload = on_unload  # e.g. forget the adapter's cached prompt prefixes
        self.paths = dict(paths)
        self.device = device
        self._state = threading.Lock()
        self._mutate = threading.Lock()
        self._in_use: Counter[str] = Counter()
        self._loaded: set[str] = set()
        self._doomed: set[str] = set()  # evicted while in use: deleted at the last unpin
        self.loads = 0
        self.unloads = 0
        self.lora_parameters = 0

    @property
    def loaded(self) -> list[str]:
        with self._state:
            return sorted(self._loaded - self._doomed)

    def load(self, adapter_id: str) -> AdapterSlot:
        """Load the adapter's weights (blocking: call it in a worker thread)."""
        self._ensure_loaded(adapter_id)
        return AdapterSlot(self, adapter_id)

    def try_pin(self, adapter_id: str) -> bool:
        """Count a row in flight on a loaded adapter; False when it is not loaded."""
        with self._state:
            if adapter_id not in self._loaded:
                return False
            self._doomed.discard(adapter_id)  # wanted again: keep it
            self._in_use[adapter_id] += 1
            return True

    def load_and_pin(self, adapter_id: str) -> None:
        """Pin, loading the adapter first if it is gone (blocking: call it in a thread)."""
        while not self.try_pin(adapter_id):
            self._ensure_loaded(adapter_id)

    def unpin(self, adapter_id: str) -> None:
        with self._state:
            self._in_use[adapter_id] -= 1
            if self._in_use[adapter_id] > 0:
                return
            del self._in_use[adapter_id]
            doomed = adapter_id in self._doomed
        if doomed:  # its eviction waited for this row; delete it off the caller's thread
            threading.Thread(target=self._delete, args=(adapter_id,), daemon=True).start()

    def unload(self, adapter_id: str) -> None:
        """Remove the adapter and give its memory back, in a thread of its own, at once or
        when its last row ends; the caller (Serve's eviction, or the collector) never waits."""
        with self._state:
            if adapter_id not in self._loaded:
                return
            self._doomed.add(adapter_id)
            if self._in_use[adapter_id] > 0:
                return
        threading.Thread(target=self._delete, args=(adapter_id,), daemon=True).start()

    def pinned(self, adapter_ids: list[str | None]) -> "PinnedAdapters":
        """Keep a batch's adapters loaded while it runs (blocking: use in a worker thread)."""
        return PinnedAdapters(self, [a for a in adapter_ids if a is not None])

    def adapter_names(self, adapter_ids: list[str | None]) -> list[str] | None:
        """The per-row `adapter_names` (None when this model has no adapters)."""
        if not self.paths:
            return None
        return [adapter_id or BASE_ADAPTER for adapter_id in adapter_ids]

    def _delete(self, adapter_id: str) -> None:
        with self._mutate:
            with self._state:
                if adapter_id not in self._doomed or self._in_use[adapter_id] > 0:
                    return  # wanted again meanwhile
                remaining = len(self._loaded) - 1
            with self.engine.model_lock:
                model = self.engine.model
                if remaining == 0:
                    self.engine.model = model.unload()  # the bare base model, LoRA layers gone
                else:
                    model.delete_adapter(adapter_id)
                self.lora_parameters = _lora_parameters(self.engine.model)
            with self._state:
                self._loaded.discard(adapter_id)
                self._doomed.discard(adapter_id)
                self.unloads += 1
            if self.on_unload is not None:
                self.on_unload(adapter_id)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        logger.info("adapter %s unloaded", adapter_id)

    def _ensure_loaded(self, adapter_id: str) -> None:
        path = self.paths[adapter_id]
        from peft import PeftModel  # imported on first use: a model without adapters never needs it

        with self._mutate:
            with self._state:
                if adapter_id in self._loaded:
                    self._doomed.discard(adapter_id)
                    return
            with self.engine.model_lock, expected_peft_warnings_ignored():
                model = self.engine.model
                if isinstance(model, PeftModel):
                    model.load_adapter(path, adapter_name=adapter_id)
                else:
                    model = PeftModel.from_pretrained(model, path, adapter_name=adapter_id)
                self.engine.model = model.to(self.device).eval()
                self.lora_parameters = _lora_parameters(self.engine.model)
            with self._state:
                self._loaded.add(adapter_id)
                self.loads += 1
        logger.info("adapter %s loaded from %s", adapter_id, path)


class PinnedAdapters:
    def __init__(self, host: AdapterHost, adapter_ids: list[str]) -> None:
        self.host = host
        self.adapter_ids = adapter_ids

    def __enter__(self) -> None:
        for index, adapter_id in enumerate(self.adapter_ids):
            try:
                self.host.load_and_pin(adapter_id)
            except BaseException:
                for pinned in self.adapter_ids[:index]:
                    self.host.unpin(pinned)
                raise

    def __exit__(self, *_: object) -> None:
        for adapter_id in self.adapter_ids:
            self.host.unpin(adapter_id)


def _lora_parameters(model: Any) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)


AdapterGetter = Callable[[str], Awaitable[AdapterSlot]]


def serve_multiplexed(load: Callable[[str], Awaitable[AdapterSlot]], size: int) -> AdapterGetter:
    """`load` behind `@serve.multiplexed` with this replica's cache size (from the config)."""
    from ray import serve

    async def get_adapter(adapter_id: str) -> AdapterSlot:
        return await load(adapter_id)

    getter: AdapterGetter = serve.multiplexed(max_num_models_per_replica=size)(get_adapter)
    return getter


@contextlib.contextmanager
def batching_across_adapters() -> Iterator[None]:
    """`@serve.batch` (Ray 2.60) splits every batch by the request's multiplexed model id.
    Rows carry their adapter themselves (PEFT mixed batches), so while the request queues
    for a batch the id is hidden from the batcher; Serve's routing already used it."""
    from ray.serve import context

    current = context._get_serve_request_context()
    if not current.multiplexed_model_id:
        yield
        return
    hidden = dataclasses.replace(current, multiplexed_model_id="")
    token = context._serve_request_context.set(hidden)  # type: ignore[arg-type]
    try:
        yield
    finally:
        try:
            context._serve_request_context.reset(token)
        except ValueError:  # resumed in another context (a stream): nothing left to undo
            logger.debug("request context already replaced")


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
