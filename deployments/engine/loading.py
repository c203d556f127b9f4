"""Loading a local model: a `save_pretrained` directory onto the configured device and dtype
(`auto`: CUDA with bfloat16, or float16 without bf16 support; else the CPU in float32)."""

from dataclasses import dataclass
from typing import Any

import torch

from serve_app.contracts.config import LocalModelConfig


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
    model: Any = AutoModelForCausalLM.from_pretrained(config.path, dtype=dtype)
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
