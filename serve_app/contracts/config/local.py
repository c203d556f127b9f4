"""Local models and their LoRA adapters: batching, defaults, replicas, GPUs."""

from typing import Any, Literal

from pydantic import Field, model_validator

from serve_app.contracts.config.base import (
    FALLBACKS_DESCRIPTION,
    MODEL_ID_PATTERN,
    PriceConfig,
    ReplicaConfig,
    StrictModel,
)


class BatchingConfig(StrictModel):
    mode: Literal["continuous", "static"] = Field(
        "continuous",
        description="`continuous`: rows join the running batch at the next decode step and "
        "leave as soon as they end; `static`: `@serve.batch` batches decoded to their end.",
    )
    max_batch_size: int = Field(
        8,
        ge=1,
        le=256,
        description="Most rows one decode step serves (continuous: the running batch; "
        "static: one `@serve.batch` batch).",
    )
    batch_wait_timeout_s: float = Field(
        0.01, ge=0, le=5, description="Static mode: how long a partial batch waits for more."
    )
    max_waiting: int = Field(
        256,
        ge=1,
        description="Continuous mode: requests waiting for a slot; past it a request gets 503 "
        "`backpressure` at once.",
    )
    max_prefill_tokens: int = Field(
        512,
        ge=1,
        description="Continuous mode: prompt tokens prefilled between two decode steps (at "
        "least one request each step), so newcomers never stall the running rows for long.",
    )
    prefix_cache_tokens: int = Field(
        8192,
        ge=0,
        description="Continuous mode: KV of prompt prefixes kept for reuse, in tokens "
        "(least recently used dropped); 0 turns prefix reuse off.",
    )
    prefix_block_tokens: int = Field(
        16, ge=1, le=1024, description="Prefixes are reused in whole blocks of this many tokens."
    )


class GenerationDefaults(StrictModel):
    temperature: float = Field(1.0, ge=0, le=2, description="Used when a request sets none.")
    top_p: float = Field(1.0, gt=0, le=1, description="Used when a request sets none.")
    max_tokens: int = Field(
        64, ge=1, description="Used when a request sets none (capped at max_new_tokens)."
    )


ModelTask = Literal["generate", "embed"]


class LocalModelConfig(ReplicaConfig):
    """One local (fine-tuned) causal LM, served by its own deployment named after `id`."""

    id: str = Field(pattern=MODEL_ID_PATTERN, description="Gateway model id and deployment name.")
    path: str = Field(min_length=1, description="Directory saved with `save_pretrained`.")
    task: ModelTask = Field(
        "generate",
        description="`generate`: a causal LM (chat, completions); `embed`: /v1/embeddings "
        "only (mean-pooled, L2-normalised last hidden states).",
    )
    description: str = Field("", description="Shown in the model listing.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="`auto`: bfloat16/float16 on CUDA, float32 on CPU."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="`auto` picks CUDA when the replica sees a GPU."
    )
    max_new_tokens: int = Field(256, ge=1, le=32768, description="Cap on a request's max_tokens.")
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica; fractions share a GPU.")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources each replica needs."
    )
    torch_threads: int = Field(1, ge=1, le=64, description="CPU threads torch may use.")
    defaults: GenerationDefaults = Field(default_factory=GenerationDefaults)
    price: PriceConfig = Field(default_factory=PriceConfig)
    max_queued_requests: int = Field(
        256, ge=-1, description="Requests waiting for a replica; beyond it a fast 503."
    )
    model_cache_size: int = Field(
        3,
        ge=1,
        le=256,
        description="LoRA adapters kept loaded per replica, least recently used evicted "
        "(MODEL_CACHE_SIZE when the YAML sets none).",
    )
    grammar_cache_size: int = Field(
        64,
        ge=1,
        le=4096,
        description="Compiled grammars (response_format schemas, forced tool calls) kept "
        "per replica, least recently used evicted.",
    )
    fallbacks: list[str] = Field(
        default_factory=list, description=FALLBACKS_DESCRIPTION, max_length=8
    )


class AdapterConfig(StrictModel):
    """A fine-tune stored as a PEFT LoRA adapter, served by its base model's deployment."""

    id: str = Field(pattern=MODEL_ID_PATTERN, description="Gateway model id of the fine-tune.")
    base: str = Field(description="Id of the local model the adapter was trained on.")
    path: str = Field(min_length=1, description="Directory saved with PEFT `save_pretrained`.")
    description: str = Field("", description="Shown in the model listing.")
    price: PriceConfig | None = Field(None, description="Defaults to the base model's price.")
    fallbacks: list[str] = Field(
        default_factory=list, description=FALLBACKS_DESCRIPTION, max_length=8
    )


class AdaptersConfig(StrictModel):
    """LoRA fine-tunes: declared here, or registered at run time (`/api/v1/admin/adapters`).

    A plain list under `adapters:` is read as `declared` (the older form)."""

    declared: list[AdapterConfig] = Field(
        default_factory=list, description="LoRA fine-tunes, each over one of `models`."
    )
    allowed_roots: list[str] = Field(
        default_factory=list,
        description="Directories under which an adapter registered at run time must lie "
        "(resolved, symlinks followed); empty: run-time registration is refused.",
    )
    store_url: str | None = Field(
        None,
        description="Database of run-time adapters; default `auth.key_store_url`, else the "
        "ledger's.",
    )

    @model_validator(mode="before")
    @classmethod
    def _list_is_declared(cls, value: Any) -> Any:
        return {"declared": value} if isinstance(value, list) else value

    def __len__(self) -> int:
        return len(self.declared)
