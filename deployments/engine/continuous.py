"""Continuous batching: one decode loop per model replica, rows joining and leaving at
every step.

A request is a `Sequence`. It waits in a bounded queue until the loop admits it: its prompt
is encoded and checked, its prefill runs (reusing a cached prefix's KV when there is one),
its first token is sampled, and it joins the running batch (`KVBatch`). Every step, one
forward pass decodes one token for every running row, each row with its own sampling
parameters and its own LoRA adapter (PEFT mixed batches); a row that ends (EOS, stop string,
`max_tokens`, cancelled, past its deadline) leaves at once and its slot goes to the next
waiting request. Newcomers are prefilled between two decode steps, at most
`max_prefill_tokens` of prompt per step, so a long prompt never stalls the others for long.

The loop runs on a thread of its own (forward passes never block the event loop) and
delivers results through `loop.call_soon_threadsafe`.
"""

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from deployments.engine.decoding import BatchGenerator, RowState, SamplingParams, advance_row
from deployments.engine.detokenize import IncrementalDetokenizer
from deployments.engine.kv_batch import KVBatch, cache_tensors
from deployments.engine.prefix_cache import PrefixCache
from deployments.engine.sampling import RowSampler, RowSampling, SampledToken, sample_rows
from serve_app.contracts.errors import (
    GatewayError,
    InternalError,
    ServiceUnavailableError,
    UpstreamTimeoutError,
)

logger = logging.getLogger("ray.serve")
BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch

# What a sequence's `deliver` receives: its row after a step (streams: every step; others:
# the last one only), or the error that ended it.
Delivery = RowState | GatewayError


@dataclass(eq=False, slots=True)
class Sequence:
    """One request. `prepare` (run on the engine thread) encodes and checks the prompt;
    `deliver` is called on the event loop's thread."""

    prepare: Callable[[], list[int] | GatewayError]
    sampling: SamplingParams
    deliver: Callable[[Delivery], None]
    adapter: str = BASE
    deadline: float | None = None
    stream: bool = False
    cancelled: bool = False
    sampler: RowSampler | None = None  # set by `prepare` (seed, penalties, grammar, ...)
    row: RowState | None = None
    last: SampledToken = field(default_factory=lambda: SampledToken(0))
    kv_tokens: int = 0
    enqueued_at: float = field(default_factory=time.monotonic)


class ContinuousEngine:
    """The continuous-batching loop over a `BatchGenerator`'s model, tokenizer and lock
    (`AdapterHost` swaps adapters into that same model under that lock)."""

    def __init__(self, generator: BatchGenerator, settings: Any) -> None:
        self.generator = generator
        self.settings = settings  # a BatchingConfig, replaced on reconfigure
        self.prefix = PrefixCache(settings.prefix_cache_tokens, settings.prefix_block_tokens)
        self.batch = KVBatch(generator.device)
        self.running: list[Sequence] = []
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self.steps = 0
        self.stepped_rows = 0
        self.admitted = 0
        self._thread = threading.Thread(target=self._run, name="continuous-batching", daemon=True)
        self._thread.start()

    def reconfigure(self, settings: Any) -> None:
        self.settings = settings
        self.prefix.max_tokens = settings.prefix_cache_tokens

    def submit(self, sequence: Sequence) -> None:
        self.submit_all([sequence])

    def submit_all(self, sequences: list[Sequence]) -> None:
        """Queue a request's rows (event loop); a full queue is 503 `backpressure` at once."""
        with self._wake:
            if len(self._waiting) + len(sequences) > self.settings.max_waiting:
                raise ServiceUnavailableError(
                    "The model's queue is full; retry shortly.",
                    code="backpressure",
                    retry_after_s=1.0,
                )
            self._waiting.extend(sequences)
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._wake:
                while not self._stopping and not self._waiting and not self.running:
                    self._wake.wait()
                if self._stopping:
                    return
            try:
                self._admit()
                if self.running:
                    self._decode_step()
            except Exception as exc:  # a failed forward ends the rows it served, not the loop
                logger.exception("continuous batching step failed")
                self._fail_running(InternalError(f"The model failed: {type(exc).__name__}."))

    def _next_waiting(self) -> Sequence | None:
        with self._wake:
            return self._waiting.popleft() if self._waiting else None

    def _admit(self) -> None:
        budget = self.settings.max_prefill_tokens
        admitted_tokens = 0
        while len(self.running) < self.settings.max_batch_size:
            if admitted_tokens >= budget:
                return
            sequence = self._next_waiting()
            if sequence is None:
                return
            try:
                admitted_tokens += self._admit_one(sequence)
            except Exception as exc:  # this request fails; the running rows go on
                logger.exception("prefill failed")
                if self.batch.size > len(self.running):
                    self.batch.keep(list(range(len(self.running))))
                sequence.deliver(InternalError(f"The model failed: {type(exc).__name__}."))

    def _admit_one(self, sequence: Sequence) -> int:
        if sequence.cancelled:
            return 0
        if sequence.deadline is not None and time.time() > sequence.deadline:
            sequence.deliver(
                UpstreamTimeoutError(
                    "The request's deadline passed while it waited for the model.",
                    code="deadline_exceeded",
                )
            )
            return 0
        prepared = sequence.prepare()
        if isinstance(prepared, GatewayError):
            sequence.deliver(prepared)
            return 0
        computed = self._prefill(sequence, prepared)
        self.admitted += 1
        self._after_token(sequence)
        if sequence.row is not None and not sequence.row.finished:
            self.running.append(sequence)
        else:
            self.batch.keep(list(range(len(self.running))))  # the finished row's KV goes
        return computed

    def _forward(self, adapters: list[str], **inputs: Any) -> Any:
        generator = self.generator
        with generator.model_lock:
            model = generator.model
            extra = {"adapter_names": adapters} if hasattr(model, "peft_config") else {}
            return model(use_cache=True, **inputs, **extra)

    def _prefill(self, sequence: Sequence, ids: list[int]) -> int:
        """Run the prompt (past any cached prefix), sample the first token, add the row's
        KV to the batch. Returns the prompt tokens actually computed."""
        generator = self.generator
        reused, prefix_kv = self.prefix.lookup(sequence.adapter, ids)
        cache = DynamicCache(ddp_cache_data=prefix_kv) if prefix_kv else DynamicCache()
        device = generator.device
        out = self._forward(
            [sequence.adapter],
            input_ids=torch.tensor([ids[reused:]], dtype=torch.long, device=device),
            position_ids=torch.arange(reused, len(ids), device=device).unsqueeze(0),
            attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=device),
            **{generator._cache_arg: cache},
        )
        cache = getattr(out, generator._cache_arg)
        self.prefix.store(sequence.adapter, ids, cache_tensors(cache), reused)
        sequence.row = RowState(
            sequence.sampling,
            len(ids),
            detokenizer=IncrementalDetokenizer(generator.tokenizer, ids),
        )
        sequence.kv_tokens = len(ids)
        self.batch.add(cache)
        if sequence.sampler is None:
            plain = RowSampling(
                temperature=sequence.sampling.temperature, top_p=sequence.sampling.top_p
            )
            sequence.sampler = RowSampler(plain, 0, device)
        (sequence.last,) = sample_rows(out.logits[:, -1, :], [sequence.sampler])
        return len(ids) - reused

    def _decode_step(self) -> None:
        self._drop_ended()
        if not self.running:
            return
        generator = self.generator
        device = generator.device
        running = self.running
        out = self._forward(
            [s.adapter for s in running],
            input_ids=torch.tensor([[s.last.token_id] for s in running], device=device),
            position_ids=torch.tensor([[s.kv_tokens] for s in running], device=device),
            attention_mask=self.batch.step_mask(),
            **{generator._cache_arg: self.batch.cache},
        )
        self.batch.cache = getattr(out, generator._cache_arg)
        self.steps += 1
        self.stepped_rows += len(running)
        samplers = [s.sampler for s in running if s.sampler is not None]
        picked = sample_rows(out.logits[:, -1, :], samplers)
        for sequence, sampled in zip(running, picked):
            sequence.kv_tokens += 1
            sequence.last = sampled
        for sequence in running:
            self._after_token(sequence)
        self._drop_ended()

    def _after_token(self, sequence: Sequence) -> None:
        """Advance the row by its newest token and deliver what the caller waits for."""
        row = sequence.row
        assert row is not None
        advance_row(row, sequence.last, self.generator.eos_token_id, sequence.sampler)
        if sequence.stream or row.finished:
            sequence.deliver(row)

    def _drop_ended(self) -> None:
        """Retire finished, cancelled and (non-streaming) past-deadline rows."""
        now = time.time()
        keep: list[int] = []
        for index, sequence in enumerate(self.running):
            row = sequence.row
            if row is None or row.finished or sequence.cancelled:
                continue
            if not sequence.stream and sequence.deadline is not None and now > sequence.deadline:
                sequence.deliver(
                    UpstreamTimeoutError("The request's deadline passed.", code="deadline_exceeded")
                )
                continue
            keep.append(index)
        if len(keep) != len(self.running):
            self.running = [self.running[i] for i in keep]
            self.batch.keep(keep)

    def _fail_running(self, error: GatewayError) -> None:
        for sequence in self.running:
            if not sequence.cancelled:
                sequence.deliver(error)
        self.running = []
        self.batch.keep([])
