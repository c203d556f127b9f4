"""The deployment that serves one local causal LM with dynamic batching.

`LocalModelServer` is a plain class; `deployments.graph` wraps it with `serve.deployment`
at build time. The loader is injected so tests can hand in a tiny model.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from ray import serve

from deployments.engine.adapter_gate import AdapterGate, AdapterSource
from deployments.engine.continuous import ContinuousEngine
from deployments.engine.continuous_serving import ContinuousRequest, run_to_end, stream_chunks
from deployments.engine.decoding import BatchGenerator, RowState, SamplingParams
from deployments.engine.loading import LoadedModel, load_hf_model
from deployments.engine.lora import (
    AdapterGetter,
    AdapterHost,
    AdapterSlot,
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
    UpstreamTimeoutError,
)
from serve_app.contracts.wire import GenerationOutput, GenerationParams, StreamChunk

logger = logging.getLogger("ray.serve")
# Placeholder for a runnable row's slot until its decode result replaces it.
_UNDECODED = InternalError("The row was not decoded.")


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
        adapter_source: AdapterSource | None = None,
        adapter_sync_s: float = 5.0,
    ) -> None:
        self.config = LocalModelConfig.model_validate(config)
        torch.set_num_threads(self.config.torch_threads)
        loaded = loader(self.config)
        self.engine = BatchGenerator(
            loaded.model, loaded.tokenizer, loaded.device, loaded.max_context
        )
        self.continuous = ContinuousEngine(self.engine, self.config.batching)
        self.adapters = AdapterHost(
            self.engine,
            adapter_paths or {},
            loaded.device,
            on_unload=self.continuous.prefix.drop_adapter,
        )
        self.gate = AdapterGate(
            self.config.id,
            self.adapters,
            multiplex(self._load_adapter, self.config.model_cache_size),
            adapter_source,
            adapter_sync_s,
        )
        self.planner = RequestPlanner(self.engine, self.config.id, self.config.grammar_cache_size)
        self.has_chat_template = self.planner.has_chat_template
        self.metadata = {**loaded.metadata, "chat_template": self.has_chat_template}
        self.batches = 0
        self.batched_requests = 0
        self.ongoing = 0  # requests in this replica now: queued for a batch or decoding
        self.metrics = EngineMetrics()
        self.reconfigure(self.config.batching.model_dump())
        logger.info("model %s loaded on %s", self.config.id, loaded.device)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this with the deployment's `user_config` (batching settings)."""
        batching = BatchingConfig.model_validate(user_config)
        self.batching = batching
        self.continuous.reconfigure(batching)
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

    def _request(self, params: GenerationParams) -> ContinuousRequest:
        """One request for the continuous engine: `n` rows, checked and encoded once."""
        sampling = self._item(params).sampling

        def prepare() -> tuple[list[int], list[Any]] | GatewayError:
            try:
                self.planner.check(params)
                samplers = self.planner.samplers(params)
            except InvalidRequestError as exc:
                return exc
            ids = self._prepare_one(params, sampling.max_tokens)
            return ids if isinstance(ids, GatewayError) else (ids, samplers)

        return ContinuousRequest(
            params, sampling, prepare, self._served_name(params), self.planner.parses_tools(params)
        )

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        self.ongoing += 1
        try:
            async with self._adapter_pinned(params):
                if self.batching.mode == "continuous":
                    return await run_to_end(self.continuous, self._request(params))
                result = await self._generate_batch(self._item(params))
        finally:
            self.ongoing -= 1
        if isinstance(result, GatewayError):
            raise result
        return result

    async def generate_stream(self, params: GenerationParams) -> AsyncIterator[StreamChunk]:
        """Token-by-token chunks; closing this stream (client gone) stops the row's decode."""
        item = self._item(params)
        self.ongoing += 1
        try:
            async with self._adapter_pinned(params):
                if self.batching.mode == "continuous":
                    async for chunk in stream_chunks(self.continuous, self._request(params)):
                        yield chunk
                    return
                async for chunks in self._stream_batch(item):
                    if isinstance(chunks, GatewayError):
                        raise chunks
                    for chunk in chunks:
                        yield chunk
        finally:
            item.cancelled = True
            self.ongoing -= 1

    async def _load_adapter(self, adapter_id: str) -> AdapterSlot:
        if adapter_id not in self.adapters.paths:  # deleted meanwhile (run-time adapters)
            raise KeyError(adapter_id)
        return await asyncio.to_thread(self.adapters.load, adapter_id)

    def _adapter_pinned(self, params: GenerationParams) -> Any:
        return self.gate.pinned(params.adapter, params.adapter_path)

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
            item.streams = ChoiceStreams(
                item.params, self._served_name(item.params), self._tools(item)
            )
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
            prepared.append(self._prepare_one(item.params, item.sampling.max_tokens))
        return prepared

    def _prepare_one(self, params: GenerationParams, max_tokens: int) -> list[int] | GatewayError:
        """Encode one prompt (off the event loop) and check that it fits the context."""
        try:
            prompt_ids = self.engine.encode(self._prompt_text(params))
        except Exception as exc:  # e.g. a chat template rejecting the message order
            return InvalidRequestError(
                f"The messages cannot be rendered for this model: {exc}", param="messages"
            )
        return self._context_error(len(prompt_ids), max_tokens) or prompt_ids

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
                    self._served_name(item.params),
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
        if prompt_tokens >= limit:
            return InvalidRequestError(
                f"The prompt has {prompt_tokens} tokens; this model's context is {limit} "
                "tokens. Shorten the prompt.",
                param="prompt",
                code="context_length_exceeded",
            )
        if prompt_tokens + max_tokens > limit:
            return InvalidRequestError(
                f"max_tokens is {max_tokens}, but this model's context of {limit} tokens leaves "
                f"{limit - prompt_tokens} after the {prompt_tokens}-token prompt. Lower "
                "max_tokens or shorten the prompt.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return None

    def _served_name(self, params: GenerationParams) -> str:
        return params.adapter or self.config.id

    async def count_tokens(self, params: GenerationParams) -> int:
        """Input tokens of `params` as this model sees them (its tokenizer and chat template),
        for `/v1/messages/count_tokens`; encoded off the event loop."""
        return len(await asyncio.to_thread(self.engine.encode, self._prompt_text(params)))

    def describe(self) -> dict[str, Any]:
        """Model metadata and batching figures for /api/v1/models and /api/v1/status."""
        engine = self.continuous
        if self.batching.mode == "continuous":  # decode steps and the rows each one served
            batches, rows = engine.steps, engine.stepped_rows
        else:
            batches, rows = self.batches, self.batched_requests
        return {
            "metadata": self.metadata,
            "batching_mode": self.batching.mode,
            "batches": batches,
            "batched_requests": rows,
            "average_batch_size": round(rows / batches, 3) if batches else 0.0,
            "max_batch_size": self.batching.max_batch_size,
            "ongoing_requests": self.ongoing,
            "continuous": {
                "running": len(engine.running),
                "waiting": engine.waiting,
                "admitted": engine.admitted,
                "prefix_cache": {
                    "tokens": engine.prefix.tokens,
                    "hits": engine.prefix.hits,
                    "reused_tokens": engine.prefix.reused_tokens,
                },
            },
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
