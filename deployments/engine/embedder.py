"""The deployment that serves one local embedding model (`task: embed`) with dynamic batching.

A transformers base model (`AutoModel`: a causal LM's directory loads without its LM head)
embeds each input as the mean of its last hidden states over its tokens, L2-normalised.
Requests batch together (`@serve.batch`); all their inputs go through the model in slices of
`max_batch_size` rows, padded on the right, in a worker thread.
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from ray import serve

from deployments.engine.loading import LoadedModel, resolve_device, resolve_dtype
from serve_app.contracts.config import BatchingConfig, LocalModelConfig
from serve_app.contracts.errors import GatewayError, InvalidRequestError
from serve_app.contracts.wire import EmbeddingOutput, EmbeddingParams

logger = logging.getLogger("ray.serve")


def load_embedding_model(config: LocalModelConfig) -> LoadedModel:
    from transformers import AutoModel, AutoTokenizer

    device = resolve_device(config)
    dtype = resolve_dtype(config, device)
    tokenizer = AutoTokenizer.from_pretrained(config.path)
    model = AutoModel.from_pretrained(config.path, dtype=dtype).to(device).eval()
    hf_config = model.config
    max_context = int(
        getattr(hf_config, "max_position_embeddings", None)
        or getattr(hf_config, "n_positions", 0)
        or tokenizer.model_max_length
    )
    metadata = {
        "architecture": type(model).__name__,
        "parameter_count": sum(p.numel() for p in model.parameters()),
        "context_length": max_context,
        "dimensions": int(hf_config.hidden_size),
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "task": "embed",
    }
    return LoadedModel(model, tokenizer, device, max_context, metadata)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of each row's hidden states over its real tokens, L2-normalised."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=1.0)
    return torch.nn.functional.normalize((summed / counts).float(), p=2, dim=-1)


class LocalEmbeddingServer:
    def __init__(
        self,
        config: dict[str, Any],
        adapter_paths: Any = None,
        loader: Callable[[LocalModelConfig], LoadedModel] = load_embedding_model,
    ) -> None:
        self.config = LocalModelConfig.model_validate(config)
        torch.set_num_threads(self.config.torch_threads)
        loaded = loader(self.config)
        self.model, self.tokenizer, self.device = loaded.model, loaded.tokenizer, loaded.device
        self.max_context = loaded.max_context
        self.metadata = loaded.metadata
        self.vocab_size = int(self.model.config.vocab_size)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        self.reconfigure(self.config.batching.model_dump())
        logger.info("embedding model %s loaded on %s", self.config.id, self.device)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.batching = BatchingConfig.model_validate(user_config)
        self._embed_batch.set_max_batch_size(self.batching.max_batch_size)
        self._embed_batch.set_batch_wait_timeout_s(self.batching.batch_wait_timeout_s)

    async def embed(self, params: EmbeddingParams) -> EmbeddingOutput:
        result = await self._embed_batch(params)
        if isinstance(result, GatewayError):
            raise result
        return result

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _embed_batch(
        self, requests: list[EmbeddingParams]
    ) -> list[EmbeddingOutput | GatewayError]:
        return await asyncio.to_thread(self._run, requests)

    def _tokens(self, params: EmbeddingParams) -> list[list[int]] | GatewayError:
        rows = []
        for index, item in enumerate(params.inputs):
            ids = (
                list(self.tokenizer(item, add_special_tokens=False)["input_ids"])
                if isinstance(item, str)
                else list(item)
            )
            if not ids or len(ids) > self.max_context:
                return InvalidRequestError(
                    f"input[{index}] has {len(ids)} tokens; {self.config.id!r} takes "
                    f"1 to {self.max_context}.",
                    param="input",
                )
            if any(not 0 <= token < self.vocab_size for token in ids):
                return InvalidRequestError(
                    f"input[{index}] holds a token id outside 0..{self.vocab_size - 1}.",
                    param="input",
                )
            rows.append(ids)
        return rows

    def _run(self, requests: list[EmbeddingParams]) -> list[EmbeddingOutput | GatewayError]:
        tokenized = [self._tokens(params) for params in requests]
        rows = [row for item in tokenized if not isinstance(item, GatewayError) for row in item]
        vectors = iter(self._forward(rows))
        results: list[EmbeddingOutput | GatewayError] = []
        for item in tokenized:
            if isinstance(item, GatewayError):
                results.append(item)
                continue
            results.append(
                EmbeddingOutput(
                    [next(vectors) for _ in item], sum(len(r) for r in item), self.config.id
                )
            )
        return results

    def _forward(self, rows: Sequence[list[int]]) -> list[list[float]]:
        """Slices of `max_batch_size` rows, each padded to its longest row."""
        vectors: list[list[float]] = []
        step = self.batching.max_batch_size
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            width = max(len(row) for row in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for index, row in enumerate(chunk):
                ids[index, : len(row)] = torch.tensor(row)
                mask[index, : len(row)] = 1
            with torch.inference_mode():
                hidden = self.model(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                ).last_hidden_state
            vectors += mean_pool(hidden, mask.to(self.device)).cpu().tolist()
        return vectors

    def describe(self) -> dict[str, Any]:
        return {
            "model_id": self.config.id,
            "metadata": self.metadata,
            "batching": self.batching.model_dump(),
        }
