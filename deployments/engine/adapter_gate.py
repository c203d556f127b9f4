"""Which LoRA adapters a model replica serves, and the pin that keeps one loaded per request.

Configured adapters come with the deployment. Adapters registered at run time come with the
request (`GenerationParams.adapter_path`, resolved by the ingress from the database), so a
replica serves them at once, without a redeploy. When a `source` is given (a callable that
reads the live run-time adapters of this base model), a thread polls it every `sync_s`: an
adapter that disappeared gets 404 on this replica from then on, and is unloaded as soon as
the requests already using it have finished.
"""

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

from deployments.engine.lora import AdapterGetter, AdapterHost, batching_across_adapters
from serve_app.contracts.errors import (
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
)

logger = logging.getLogger("ray.serve")
AdapterSource = Callable[[], dict[str, str]]


async def _finish_even_if_cancelled(work: Awaitable[None], undo: Callable[[], None]) -> None:
    """Await `work`; if the caller is cancelled meanwhile, let it finish, `undo` it, re-raise."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        undo()
        raise


class AdapterGate:
    def __init__(
        self,
        model_id: str,
        host: AdapterHost,
        get_adapter: AdapterGetter,
        source: AdapterSource | None = None,
        sync_s: float = 5.0,
    ) -> None:
        self.model_id = model_id
        self.host = host
        self.get_adapter = get_adapter
        self.configured = set(host.paths)
        self.source = source
        self.sync_s = sync_s
        self.runtime: dict[str, str] = {}  # run-time adapters this replica has been asked for
        self.deleted: set[str] = set()  # run-time adapters gone from the database
        self._stop = threading.Event()
        if source is not None:
            threading.Thread(target=self._poll, name="adapter-sync", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.sync_s):
            try:
                assert self.source is not None
                self.sync(self.source())
            except Exception as exc:  # keep serving what is known; try again next time
                logger.warning("run-time adapters unavailable: %s: %s", type(exc).__name__, exc)

    def sync(self, live: dict[str, str]) -> None:
        """Apply the database's view: forget deleted adapters (unloaded once idle)."""
        for adapter_id in list(self.runtime):
            if live.get(adapter_id) != self.runtime[adapter_id]:
                self._forget(adapter_id)
        self.deleted = {a for a in self.deleted if a not in live}

    def _forget(self, adapter_id: str) -> None:
        self.deleted.add(adapter_id)
        self.runtime.pop(adapter_id, None)
        self.host.paths.pop(adapter_id, None)
        self.host.unload(adapter_id)  # deferred while a request still uses it
        logger.info("run-time adapter %s deleted: unloading", adapter_id)

    def _admit(self, adapter_id: str, adapter_path: str | None) -> None:
        if adapter_id in self.configured:
            return
        if adapter_path is None:
            raise InvalidRequestError(
                f"Model {self.model_id!r} has no adapter {adapter_id!r}.", param="model"
            )
        if adapter_id in self.deleted:
            raise NotFoundError(
                f"The model {adapter_id!r} was deleted.", param="model", code="model_not_found"
            )
        known = self.runtime.get(adapter_id)
        if known is not None and known != adapter_path:  # re-registered with new weights
            self.host.unload(adapter_id)
        self.runtime[adapter_id] = self.host.paths[adapter_id] = adapter_path

    @contextlib.asynccontextmanager
    async def pinned(self, adapter_id: str | None, adapter_path: str | None) -> AsyncIterator[None]:
        """Load the adapter through the LRU and keep it loaded while the request runs; the
        request then batches with every other request of this base model."""
        if adapter_id is None:
            yield
            return
        self._admit(adapter_id, adapter_path)
        try:
            await self.get_adapter(adapter_id)
        except Exception as exc:
            logger.warning("adapter %s failed to load: %r", adapter_id, exc)
            raise ServiceUnavailableError(
                f"The fine-tune {adapter_id!r} could not be loaded.", code="adapter_unavailable"
            ) from None
        if not self.host.try_pin(adapter_id):  # evicted meanwhile by another request
            await _finish_even_if_cancelled(
                asyncio.to_thread(self._load_and_pin, adapter_id),
                undo=lambda: self.host.unpin(adapter_id),
            )
        try:
            with batching_across_adapters():
                yield
        finally:
            self.host.unpin(adapter_id)

    def _load_and_pin(self, adapter_id: str) -> None:
        if adapter_id not in self.host.paths:  # deleted while it waited
            raise ServiceUnavailableError(
                f"The fine-tune {adapter_id!r} is being deleted.", code="adapter_unavailable"
            )
        self.host.load_and_pin(adapter_id)
