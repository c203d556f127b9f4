"""The deployment that serves one local causal LM with dynamic batching.

`LocalModelServer` is a plain class; `deployments.graph` wraps it with `serve.deployment`
at build time. The loader is injected so tests can hand in a tiny model.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from ray import serve

from deployments.generation import BatchGenerator, RowState, SamplingParams
from serve_app.config import BatchingConfig, LocalModelConfig
from serve_app.errors import GatewayError, InternalError, InvalidRequestError
from serve_app.schemas.internal import GenerationOutput, GenerationParams

logger = logging.getLogger("ray.serve")


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
    model = AutoModelForCausalLM.from_pretrained(config.path, dtype=dtype).to(device).eval()
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


@dataclass(slots=True)
class _BatchItem:
    params: GenerationParams
    sampling: SamplingParams


class LocalModelServer:
    """Serves one model: validates context length, batches requests, decodes off the loop."""

    def __init__(
        self,
        config: dict[str, Any],
        loader: Callable[[LocalModelConfig], LoadedModel] = load_hf_model,
    ) -> None:
        self.config = LocalModelConfig.model_validate(config)
        torch.set_num_threads(self.config.torch_threads)
        loaded = loader(self.config)
        self.engine = BatchGenerator(
            loaded.model, loaded.tokenizer, loaded.device, loaded.max_context
        )
        self.metadata = loaded.metadata
        self.batches = 0
        self.batched_requests = 0
        self.reconfigure(self.config.batching.model_dump())
        logger.info("model %s loaded on %s", self.config.id, loaded.device)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this with the deployment's `user_config` (batching settings)."""
        batching = BatchingConfig.model_validate(user_config)
        self._generate_batch.set_max_batch_size(batching.max_batch_size)  # type: ignore[attr-defined]
        self._generate_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)  # type: ignore[attr-defined]

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        sampling = SamplingParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature if params.temperature is not None else 1.0,
            top_p=params.top_p if params.top_p is not None else 1.0,
            stop=params.stop,
        )
        result = await self._generate_batch(_BatchItem(params, sampling))
        if isinstance(result, GatewayError):
            raise result
        return result

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _generate_batch(
        self, items: list[_BatchItem]
    ) -> list[GenerationOutput | GatewayError]:
        self.batches += 1
        self.batched_requests += len(items)
        return await asyncio.to_thread(self._run_batch, items)

    def _run_batch(self, items: list[_BatchItem]) -> list[GenerationOutput | GatewayError]:
        results: list[GenerationOutput | GatewayError] = []
        runnable: list[tuple[int, list[int], SamplingParams]] = []
        for index, item in enumerate(items):
            prompt_ids = self.engine.encode(item.params.prompt)
            error = self._context_error(len(prompt_ids), item.sampling.max_tokens)
            if error is None:
                runnable.append((index, prompt_ids, item.sampling))
            # Runnable slots hold their error-free placeholder until decoded below.
            results.append(error or InternalError("not decoded"))
        if runnable:
            rows = self.engine.generate([r[1] for r in runnable], [r[2] for r in runnable])
            for (index, _, _), row in zip(runnable, rows):
                results[index] = self._to_output(row, len(runnable))
        return results

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

    def _to_output(self, row: RowState, batch_size: int) -> GenerationOutput:
        return GenerationOutput(
            text=row.text,
            input_tokens=row.input_tokens,
            output_tokens=len(row.token_ids),
            finish_reason=row.finish_reason or "length",
            served_model=self.config.id,
            batch_size=batch_size,
        )

    def describe(self) -> dict[str, Any]:
        """Model metadata and batching figures for /api/v1/models and /api/v1/status."""
        average = self.batched_requests / self.batches if self.batches else 0.0
        return {
            "metadata": self.metadata,
            "batches": self.batches,
            "batched_requests": self.batched_requests,
            "average_batch_size": round(average, 3),
            "max_batch_size": self._generate_batch.get_max_batch_size(),  # type: ignore[attr-defined]
        }

