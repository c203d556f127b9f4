"""Batched decoding for causal LMs with per-row sampling parameters and per-row early stop.

One decode loop serves a whole batch: left-padded prompts share a KV cache, each row samples
with its own temperature/top_p, and each row stops on its own (EOS, stop string or its own
max_tokens). The loop is a generator that yields after every step, so the same code serves
non-streaming (drain it) and streaming (forward each row's new text).
"""

import inspect
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from deployments.engine.detokenize import REPLACEMENT_CHAR, IncrementalDetokenizer
from deployments.engine.sampling import (
    RowSampler,
    RowSampling,
    SampledToken,
    sample_plain,
    sample_rows,
)
from serve_app.contracts.wire import TokenLogprob


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()


@dataclass(slots=True)
class RowState:
    """Progress of one row of the batch; `emitted` is how much text was already streamed."""

    params: SamplingParams
    input_tokens: int
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    emitted: int = 0
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    logprobs_emitted: int = 0
    detokenizer: IncrementalDetokenizer | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def take_delta(self) -> str:
        """Text that is safe to stream now (never part of a stop string or a split char)."""
        end = len(self.text) if self.finished else self._safe_end()
        delta = self.text[self.emitted : end]
        self.emitted = max(self.emitted, end)
        return delta

    def take_logprobs(self) -> list[TokenLogprob]:
        """Log probability records not streamed yet (all of them once the row is finished;
        before, those of tokens whose text was streamed)."""
        if self.finished:
            end = len(self.logprobs)
        else:
            end = min(len(self.logprobs), self._tokens_covering(self.emitted))
        taken = self.logprobs[self.logprobs_emitted : end]
        self.logprobs_emitted = max(self.logprobs_emitted, end)
        return taken

    def _tokens_covering(self, chars: int) -> int:
        # Each record's token text (raw bytes) maps to at most its own chars; count the
        # records whose cumulative byte length fits the streamed text's UTF-8 length.
        limit = len(self.text[:chars].encode("utf-8"))
        total = 0
        for count, record in enumerate(self.logprobs):
            total += len(record.bytes or ())
            if total > limit:
                return count
        return len(self.logprobs)

    def _safe_end(self) -> int:
        end = len(self.text)
        while end > self.emitted and self.text[end - 1] == REPLACEMENT_CHAR:
            end -= 1
        held = _longest_stop_prefix_suffix(self.text[:end], self.params.stop)
        return max(self.emitted, end - held)


def _longest_stop_prefix_suffix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    best = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:size]):
                best = size
                break
    return best


def find_stop(text: str, stops: Sequence[str], search_from: int = 0) -> int:
    """Index of the earliest stop string in `text` at or after `search_from`, or -1."""
    found = -1
    for stop in stops:
        index = text.find(stop, search_from)
        if index != -1 and (found == -1 or index < found):
            found = index
    return found


def sample_next_tokens(
    logits: torch.Tensor, temperatures: torch.Tensor, top_ps: torch.Tensor
) -> torch.Tensor:
    """One token per row: greedy where temperature is 0, else nucleus sampling per row."""
    return sample_plain(logits, temperatures, top_ps)


def plain_samplers(params: Sequence[SamplingParams], device: torch.device) -> list[RowSampler]:
    """Samplers for rows that ask only for temperature/top_p."""
    return [
        RowSampler(RowSampling(temperature=p.temperature, top_p=p.top_p), 0, device) for p in params
    ]


class BatchGenerator:
    """Runs the decode loop for a loaded model and its tokenizer on one device."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, max_context: int):
        self.model = model
        # Held for each forward pass; whoever swaps adapters in and out of `model` takes it.
        self.model_lock = threading.Lock()
        self.tokenizer = tokenizer
        self.device = device
        self.max_context = max_context
        self.eos_token_id: int | None = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_token_id: int = pad if pad is not None else (self.eos_token_id or 0)
        # transformers 5.x renamed `past_key_values` to `cache`; accept either.
        forward_params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_params else "past_key_values"

    def encode(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def generate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        params: Sequence[SamplingParams],
        adapter_names: Sequence[str] | None = None,
        samplers: Sequence[RowSampler] | None = None,
    ) -> list[RowState]:
        final: list[RowState] = []
        for step in self.stream(prompt_ids, params, adapter_names, samplers):
            final = step
        return final

    @torch.inference_mode()
    def stream(
        self,
        prompt_ids: Sequence[Sequence[int]],
        params: Sequence[SamplingParams],
        adapter_names: Sequence[str] | None = None,
        samplers: Sequence[RowSampler] | None = None,
    ) -> Iterator[list[RowState]]:
        """Yield the rows after every decode step; the last yield has every row finished.

        `adapter_names` (one per row, `"__base__"` for none) runs rows of different LoRA
        adapters of the same base model in one forward pass (PEFT mixed-batch inference).
        Whether the model carries adapters is looked at on every step: another request may
        load the first one (or remove the last) while this batch decodes.

        `samplers` (one `RowSampler` per row) pick each row's tokens (seed, penalties,
        logit_bias, top_k, logprobs, grammar); without them rows sample with their
        temperature/top_p only."""
        names = list(adapter_names) if adapter_names else None
        rows = [
            RowState(p, len(ids), detokenizer=IncrementalDetokenizer(self.tokenizer, ids))
            for ids, p in zip(prompt_ids, params)
        ]
        input_ids, attention = self._left_pad(prompt_ids)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        row_samplers = list(samplers) if samplers else plain_samplers(params, self.device)
        past: Any = None
        for _ in range(max(p.max_tokens for p in params)):
            with self.model_lock:
                with_adapters = names is not None and hasattr(self.model, "peft_config")
                out = self.model(
                    input_ids=input_ids,
                    attention_mask=attention,
                    position_ids=positions,
                    use_cache=True,
                    **{self._cache_arg: past},
                    **({"adapter_names": names} if with_adapters else {}),
                )
            past = getattr(out, self._cache_arg)
            active = [not row.finished for row in rows]
            picked = sample_rows(out.logits[:, -1, :], row_samplers, active)
            self._advance_rows(rows, picked, row_samplers)
            yield rows
            if all(row.finished for row in rows):
                return
            next_ids = [token.token_id for token in picked]
            input_ids = torch.tensor(next_ids, device=self.device).unsqueeze(-1)
            attention = torch.cat([attention, attention.new_ones((len(rows), 1))], dim=-1)
            positions = positions[:, -1:] + 1

    def _left_pad(self, prompt_ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in prompt_ids)
        ids = torch.full((len(prompt_ids), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
        for row, tokens in enumerate(prompt_ids):
            if tokens:
                ids[row, width - len(tokens) :] = torch.tensor(list(tokens), dtype=torch.long)
                mask[row, width - len(tokens) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _advance_rows(
        self, rows: list[RowState], picked: list[SampledToken], samplers: Sequence[RowSampler]
    ) -> None:
        for row, sampled, sampler in zip(rows, picked, samplers):
            if not row.finished:
                advance_row(row, sampled, self.eos_token_id, sampler)


def advance_row(
    row: RowState,
    sampled: SampledToken,
    eos_token_id: int | None,
    sampler: RowSampler | None = None,
) -> None:
    """Append one sampled token to a running row: EOS, stop strings, a completed grammar and
    max_tokens end it. Text grows incrementally (see `detokenize`); held-back partial text
    is flushed at the end."""
    assert row.detokenizer is not None
    token = sampled.token_id
    if token == eos_token_id:
        row.finish_reason = "stop"
        row.text += row.detokenizer.flush()
        return
    row.token_ids.append(token)
    if sampled.logprob is not None:
        row.logprobs.append(sampled.logprob)
    previous_length = len(row.text)
    row.text += row.detokenizer.add(token)
    grammar_done = sampler is not None and sampler.done
    at_limit = len(row.token_ids) >= row.params.max_tokens
    if at_limit or grammar_done:
        row.text += row.detokenizer.flush()
    _apply_stop(row, previous_length)
    if not row.finished and grammar_done:
        row.finish_reason = "stop"
    if not row.finished and at_limit:
        row.finish_reason = "length"


def _apply_stop(row: RowState, previous_length: int) -> None:
    stops = row.params.stop
    if not stops:
        return
    longest = max(len(s) for s in stops)
    index = find_stop(row.text, stops, max(0, previous_length - longest + 1))
    if index != -1:
        row.text = row.text[:index]
        row.finish_reason = "stop"
