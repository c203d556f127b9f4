"""Checks on an adapter registered at run time, before it is stored: it lies under one of
`adapters.allowed_roots`, it is a PEFT LoRA adapter, and it fits the base model (the
architecture it was trained on, the vocabulary, and the shape of every weight it adds).

Blocking (file reads, a weightless "meta" copy of the base model): call it in a thread.
"""

import json
import os
from pathlib import Path
from typing import Any

from serve_app.contracts.errors import InvalidRequestError, PermissionDeniedError

WEIGHTS = "adapter_model.safetensors"


def _bad(message: str, param: str = "path") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="invalid_adapter")


def check_location(path: str, allowed_roots: list[str]) -> Path:
    """The resolved adapter directory, if it lies under an allowed root."""
    if not allowed_roots:
        raise PermissionDeniedError(
            "Run-time adapter registration is off: `adapters.allowed_roots` is empty.",
            code="adapter_registration_disabled",
        )
    resolved = Path(os.path.realpath(path))
    roots = [Path(os.path.realpath(root)) for root in allowed_roots]
    if not any(resolved == root or root in resolved.parents for root in roots):
        raise _bad(
            f"The adapter path {path!r} is not under adapters.allowed_roots "
            f"({', '.join(str(r) for r in roots)})."
        )
    if not (resolved / "adapter_config.json").is_file():
        raise _bad(f"{path!r} is not a PEFT adapter: it has no adapter_config.json.")
    return resolved


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _bad(f"{path.name} cannot be read: {exc}") from None
    if not isinstance(loaded, dict):
        raise _bad(f"{path.name} is not a JSON object.")
    return loaded


def check_adapter(path: str, allowed_roots: list[str], base_id: str, base_path: str) -> None:
    """Raise a 400 naming what does not match (or 403 when registration is off)."""
    adapter_dir = check_location(path, allowed_roots)
    adapter_config = _read_json(adapter_dir / "adapter_config.json")
    if str(adapter_config.get("peft_type", "")).upper() != "LORA":
        raise _bad(f"Only LoRA adapters are served; this one is {adapter_config.get('peft_type')}.")
    base_config = _read_json(Path(base_path) / "config.json")
    trained_on = adapter_config.get("base_model_name_or_path")
    if trained_on and (Path(trained_on) / "config.json").is_file():
        _compare_bases(_read_json(Path(trained_on) / "config.json"), base_config, base_id)
    if not (adapter_dir / WEIGHTS).is_file():
        raise _bad(f"{path!r} has no {WEIGHTS}.")
    _compare_shapes(adapter_dir / WEIGHTS, base_config, base_id)


def _compare_bases(trained: dict[str, Any], base: dict[str, Any], base_id: str) -> None:
    for key, what in (("model_type", "architecture"), ("architectures", "architecture")):
        if trained.get(key) and base.get(key) and trained[key] != base[key]:
            raise _bad(
                f"{what} mismatch: the adapter was trained on {trained[key]}, base model "
                f"{base_id!r} is {base[key]}."
            )
    if trained.get("vocab_size") != base.get("vocab_size"):
        raise _bad(
            f"vocabulary mismatch: the adapter's base model has {trained.get('vocab_size')} "
            f"tokens, base model {base_id!r} has {base.get('vocab_size')}."
        )


def _module_dims(module: Any) -> tuple[int, int] | None:
    """(input features, output features) of a layer LoRA can wrap."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    if hasattr(module, "num_embeddings"):
        return int(module.num_embeddings), int(module.embedding_dim)
    if hasattr(module, "nf") and hasattr(module, "weight"):  # GPT-2's Conv1D: (in, out)
        return int(module.weight.shape[0]), int(module.nf)
    return None


def _expected(name: str, dims: tuple[int, int], rank: int) -> tuple[int, ...] | None:
    inputs, outputs = dims
    if ".lora_A." in name:
        return (rank, inputs)
    if ".lora_B." in name:
        return (outputs, rank)
    if ".lora_embedding_A" in name:
        return (rank, inputs)
    if ".lora_embedding_B" in name:
        return (outputs, rank)
    return None


def _compare_shapes(weights: Path, base_config: dict[str, Any], base_id: str) -> None:
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**base_config)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    modules = dict(skeleton.named_modules())
    vocab = int(base_config.get("vocab_size") or 0)
    with safe_open(str(weights), framework="pt") as handle:
        for name in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
            shape = tuple(handle.get_slice(name).get_shape())
            _check_one(name, shape, modules, vocab, base_id)


def _check_one(
    name: str, shape: tuple[int, ...], modules: dict[str, Any], vocab: int, base_id: str
) -> None:
    marker = next((m for m in (".lora_A", ".lora_B", ".lora_embedding") if m in name), None)
    if marker is None or len(shape) != 2:
        return
    module_name = name.removeprefix("base_model.model.").split(marker)[0]
    module = modules.get(module_name)
    dims = _module_dims(module) if module is not None else None
    if dims is None:
        raise _bad(f"architecture mismatch: base model {base_id!r} has no layer {module_name!r}.")
    rank = shape[0] if (".lora_A" in name or "embedding_A" in name) else shape[1]
    expected = _expected(name, dims, rank)
    if expected is None or expected == shape:
        return
    wrong = next(want for want, got in zip(expected, shape) if want != got)
    if vocab and wrong == vocab:
        raise _bad(
            f"vocabulary mismatch: {module_name!r} of base model {base_id!r} covers {vocab} "
            f"tokens; the adapter's weight {name} has shape {list(shape)}."
        )
    raise _bad(
        f"shape mismatch: {name} has shape {list(shape)}, but layer {module_name!r} of base "
        f"model {base_id!r} needs {list(expected)} (the adapter was trained on another size)."
    )
