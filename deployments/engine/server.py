"""The deployment that serves one local causal LM with dynamic batching.

`LocalModelServer` is a plain class; `deployments.graph` wraps it with `serve.deployment`
at build time. The loader is injected so tests can hand in a tiny model.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from ray import serve

from deployments.engine.decoding import BatchGenerator, RowState, SamplingParams
from deployments.engine.lora import (
    AdapterGetter,
    AdapterHost,
    AdapterSlot,
    batching_across_adapters,
    replica_placement,
    serve_multiplexed,
)
from deployments.engine.metrics import EngineMetrics
from deployments.engine.requests import BatchRows, ChoiceStreams, RequestPlanner, to_output
from deployments.engine.sampling import RowSampler
from serve_app.contracts.config import BatchingConfig, LocalModelConfig
from serve_app.contracts.errors import (
    GatewayError,
    InternalError,
    InvalidRequestError,
    ServiceUnavailableError,
    UpstreamTimeoutError,
)
from serve_app.contracts.wire import GenerationOutput, GenerationParams, StreamChunk

logger = logging.getLogger("ray.serve")
# Placeholder for a runnable row's slot until its decode result replaces it.
_UNDECODED = InternalError("The row was not decoded.")


@dataclass(frozen=True, slots=True)
class LoadedModel:
    model: Any
    tokenizer: Any
    device: torch.device
    max_context: int
    metadata: dict[str, Any]


def resolve_device(config: LocalModelConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_dtype(config: LocalModelConfig, device: torch.device) -> torch.dtype:
    if config.dtype != "auto":
        return getattr(torch, config.dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_hf_model(config: LocalModelConfig) -> LoadedModel:
    """Load a `save_pretrained` directory with transformers onto the configured device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(config)
    dtype = resolve_dtype(config, device)
    tokenizer = AutoTokenizer.from_pretrained(config.path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(config.path, dtype=dtype)
    model = model.to(device).eval()
    hf_config = model.config
    max_context = int(
        getattr(hf_config, "max_position_embeddings", None)
        or getattr(hf_config, "n_positions", 0)
        or tokenizer.model_max_length
    )
    metadata = {
        "architecture": (hf_config.architectures or [type(model).__name__])[0],
        "parameter_count": sum(p.numel() for p in model.parameters()),
        "context_length": max_context,
        "vocab_size": int(hf_config.vocab_size),
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
    }
    return LoadedModel(model, tokenizer, device, max_context, metadata)


async def _finish_even_if_cancelled(work: Awaitable[None], undo: Callable[[], None]) -> None:
    """Await `work`; if the caller is cancelled meanwhile, let it finish, `undo` it, re-raise."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        undo()
        raise


@dataclass(slots=True)
class _BatchItem:
    params: GenerationParams
    sampling: SamplingParams
    cancelled: bool = False
    samplers: list[RowSampler] = field(default_factory=list)  # one per choice (`n`)
    streams: ChoiceStreams | None = None


class LocalModelServer:
    """Serves one model: validates context length, batches requests, decodes off the loop.

    Non-streaming and streaming requests batch separately (two `@serve.batch` queues); in
    both, rows carry their own sampling parameters and stop on their own.
    """

    def __init__(
        self,
        config: dict[str, Any],
        adapter_paths: Mapping[str, str] | None = None,
        loader: Callable[[LocalModelConfig], LoadedModel] = load_hf_model,
        multiplex: Callable[[Any, int], AdapterGetter] = serve_multiplexed,
    ) -> None:
        self.config = LocalModelConfig.model_validate(config)
        torch.set_num_threads(self.config.torch_threads)
        loaded = loader(self.config)
        self.engine = BatchGenerator(
            loaded.model, loaded.tokenizer, loaded.device, loaded.max_context
        )
        self.adapters = AdapterHost(self.engine, adapter_paths or {}, loaded.device)
        self._get_adapter = multiplex(self._load_adapter, self.config.model_cache_size)
        self.planner = RequestPlanner(self.engine, self.config.id, self.config.grammar_cache_size)
        self.has_chat_template = self.planner.has_chat_template
        self.metadata = {**loaded.metadata, "chat_template": self.has_chat_template}
        self.batches = 0
        self.batched_requests = 0
        self.metrics = EngineMetrics()
        self.reconfigure(self.config.batching.model_dump())
        logger.info("model %s loaded on %s", self.config.id, loaded.device)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this with the deployment's `user_config` (batching settings)."""
        batching = BatchingConfig.model_validate(user_config)
        self.batching = batching
        for batched in (self._generate_batch, self._stream_batch):
            batched.set_max_batch_size(batching.max_batch_size)
            batched.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)

    @staticmethod
    def _item(params: GenerationParams) -> _BatchItem:
        sampling = SamplingParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature if params.temperature is not None else 1.0,
            top_p=params.top_p if params.top_p is not None else 1.0,
            stop=params.stop,
        )
        return _BatchItem(params, sampling)

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        async with self._adapter_pinned(params.adapter):
            result = await self._generate_batch(self._item(params))
        if isinstance(result, GatewayError):
            raise result
        return result

    async def generate_stream(self, params: GenerationParams) -> AsyncIterator[StreamChunk]:
        """Token-by-token chunks; closing this stream (client gone) stops the row's decode."""
        item = self._item(params)
        try:
            async with self._adapter_pinned(params.adapter):
                async for chunks in self._stream_batch(item):
                    if isinstance(chunks, GatewayError):
                        raise chunks
                    for chunk in chunks:
                        yield chunk
        finally:
            item.cancelled = True

    async def _load_adapter(self, adapter_id: str) -> AdapterSlot:
        return await asyncio.to_thread(self.adapters.load, adapter_id)

    @contextlib.asynccontextmanager
    async def _adapter_pinned(self, adapter_id: str | None) -> AsyncIterator[None]:
        """Load the adapter through the LRU and keep it loaded while the request runs; the
        request then batches with every other request of this base model."""
        if adapter_id is None:
            yield
            return
        if adapter_id not in self.adapters.paths:
            raise InvalidRequestError(
                f"Model {self.config.id!r} has no adapter {adapter_id!r}.", param="model"
            )
        try:
            await self._get_adapter(adapter_id)
        except Exception as exc:
            logger.warning("adapter %s failed to load: %r", adapter_id, exc)
            raise ServiceUnavailableError(
                f"The fine-tune {adapter_id!r} could not be loaded.", code="adapter_unavailable"
            ) from None
        if not self.adapters.try_pin(adapter_id):  # evicted meanwhile by another request
            await _finish_even_if_cancelled(
                asyncio.to_thread(self.adapters.load_and_pin, adapter_id),
                undo=lambda: self.adapters.unpin(adapter_id),
            )
        try:
            with batching_across_adapters():
                yield
        finally:
            self.adapters.unpin(adapter_id)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _generate_batch(
        self, items: list[_BatchItem]
    ) -> list[GenerationOutput | GatewayError]:
        self._count_batch(len(items))
        return await asyncio.to_thread(self._run_batch, items)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _stream_batch(self, items: list[_BatchItem]) -> AsyncIterator[list[Any]]:
        self._count_batch(len(items))
        pins = self.adapters.pinned([item.params.adapter for item in items])
        await asyncio.to_thread(pins.__enter__)
        try:
            async for out in self._stream_steps(items):
                yield out
        finally:
            pins.__exit__()

    async def _stream_steps(self, items: list[_BatchItem]) -> AsyncIterator[list[Any]]:
        prepared = await asyncio.to_thread(self._prepare, items)
        # Rows that failed validation get their error once, then end; the rest decode.
        pending: list[Any] = [p if isinstance(p, GatewayError) else None for p in prepared]
        rows_of = self._rows(items, prepared)
        for item in items:
            item.streams = ChoiceStreams(item.params, self._served_name(item), self._tools(item))
        steps = (
            self.engine.stream(
                rows_of.prompt_ids,
                rows_of.sampling,
                self._adapter_names(items, rows_of.item_of_row),
                rows_of.samplers,
            )
            if rows_of.prompt_ids
            else iter(())
        )
        done = [False] * len(items)
        while not all(done):
            rows = await asyncio.to_thread(next, steps, None)
            out: list[Any] = [StopIteration] * len(items)
            for i, error in enumerate(pending):
                if error is not None and not done[i]:
                    out[i], done[i] = error, True
            if rows is not None:
                for i in sorted(set(rows_of.item_of_row)):
                    out[i] = self._stream_step(items[i], rows_of.of_item(rows, i), done, i)
            yield out
            if rows is None:
                return

    def _stream_step(
        self, item: _BatchItem, rows: list[RowState], done: list[bool], index: int
    ) -> Any:
        if done[index]:
            return StopIteration
        assert item.streams is not None
        chunks = item.streams.step(rows, item.cancelled)
        if all(row.finished for row in rows):
            done[index] = True
        return chunks

    def _count_batch(self, size: int) -> None:
        self.batches += 1
        self.batched_requests += size
        self.metrics.record_batch(self.config.id, size)

    def _prompt_text(self, params: GenerationParams) -> str:
        return self.planner.prompt_text(params)

    def _prepare(self, items: list[_BatchItem]) -> list[list[int] | GatewayError]:
        """Encode each prompt (in the worker thread) and check it fits the context."""
        prepared: list[list[int] | GatewayError] = []
        now = time.time()
        for item in items:
            deadline = item.params.deadline
            if deadline is not None and now > deadline:
                prepared.append(
                    UpstreamTimeoutError(
                        "The request's deadline passed while it waited for the model.",
                        code="deadline_exceeded",
                    )
                )
                continue
            try:
                self.planner.check(item.params)
                item.samplers = self.planner.samplers(item.params)
            except InvalidRequestError as exc:
                prepared.append(exc)
                continue
            try:
                prompt_ids = self.engine.encode(self._prompt_text(item.params))
            except Exception as exc:  # e.g. a chat template rejecting the message order
                prepared.append(
                    InvalidRequestError(
                        f"The messages cannot be rendered for this model: {exc}", param="messages"
                    )
                )
                continue
            error = self._context_error(len(prompt_ids), item.sampling.max_tokens)
            prepared.append(error or prompt_ids)
        return prepared

    def _run_batch(self, items: list[_BatchItem]) -> list[GenerationOutput | GatewayError]:
        with self.adapters.pinned([item.params.adapter for item in items]):
            return self._decode_batch(items)

    def _decode_batch(self, items: list[_BatchItem]) -> list[GenerationOutput | GatewayError]:
        prepared = self._prepare(items)
        results: list[GenerationOutput | GatewayError] = [
            p if isinstance(p, GatewayError) else _UNDECODED for p in prepared
        ]
        rows_of = self._rows(items, prepared)
        if rows_of.prompt_ids:
            rows = self.engine.generate(
                rows_of.prompt_ids,
                rows_of.sampling,
                self._adapter_names(items, rows_of.item_of_row),
                rows_of.samplers,
            )
            for index in sorted(set(rows_of.item_of_row)):
                item = items[index]
                results[index] = to_output(
                    item.params,
                    rows_of.of_item(rows, index),
                    self._served_name(item),
                    self._tools(item),
                )
        return results

    @staticmethod
    def _rows(items: list[_BatchItem], prepared: list[list[int] | GatewayError]) -> BatchRows:
        rows = BatchRows()
        for index, (item, ids) in enumerate(zip(items, prepared)):
            if not isinstance(ids, GatewayError):
                rows.add(index, ids, item.sampling, item.samplers)
        return rows

    def _tools(self, item: _BatchItem) -> bool:
        return self.planner.parses_tools(item.params)

    def _adapter_names(self, items: list[_BatchItem], indexes: list[int]) -> list[str] | None:
        return self.adapters.adapter_names([items[i].params.adapter for i in indexes])

    def _context_error(self, prompt_tokens: int, max_tokens: int) -> GatewayError | None:
        limit = self.engine.max_context
        if prompt_tokens == 0:
            return InvalidRequestError("The prompt encodes to no tokens.", param="prompt")
        if prompt_tokens + max_tokens > limit:
            return InvalidRequestError(
                f"This model's context is {limit} tokens; the prompt has {prompt_tokens} and "
                f"max_tokens asks for {max_tokens}. Shorten the prompt or lower max_tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return None

    def _served_name(self, item: _BatchItem) -> str:
        return item.params.adapter or self.config.id

    def describe(self) -> dict[str, Any]:
        """Model metadata and batching figures for /api/v1/models and /api/v1/status."""
        average = self.batched_requests / self.batches if self.batches else 0.0
        return {
            "metadata": self.metadata,
            "batches": self.batches,
            "batched_requests": self.batched_requests,
            "average_batch_size": round(average, 3),
            "max_batch_size": self.batching.max_batch_size,
            "adapters": {
                "configured": sorted(self.adapters.paths),
                "loaded": self.adapters.loaded,
                "model_cache_size": self.config.model_cache_size,
                "loads": self.adapters.loads,
                "unloads": self.adapters.unloads,
                "lora_parameters": self.adapters.lora_parameters,
            },
            "placement": replica_placement(),
        }
