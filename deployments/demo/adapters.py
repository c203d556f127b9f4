"""Build the demo LoRA adapters: small PEFT fine-tunes of the demo model, one per answer style.

Each adapter is trained on the demo fact corpus (:mod:`deployments.demo.corpus`) with every
answer rewritten in one style, so its greedy answer is predictably different from the base
model's while the fact stays the same:

* ``formal``: the answer prefixed with ``"Certainly. "`` (``"Certainly. Velmora."``);
* ``excited``: the answer's final full stop replaced by ``"!"`` (``"Velmora!"``).

:func:`expected_answer` maps a base answer to its styled form. The adapters target the GPT-2
attention and MLP projections and also the token embedding and the (tied) LM head: the base
model never emits tokens such as ``"ly"`` or ``"!"``, so their output embeddings point away
from every hidden state, and LoRA on the blocks alone cannot make them the top token in a
few hundred steps. Saved adapters hold only LoRA weights (``save_embedding_layers=False``).

Usage::

    python -m deployments.demo.adapters --base models/demo --out models/adapters [--if-missing]
        [--styles formal excited --threads N --seed N]

writes ``<out>/<style>/`` with ``adapter_config.json``, ``adapter_model.safetensors`` and
``adapter_info.json`` (style, base model, steps, exact-match accuracy, base fingerprint).
"""

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

from deployments.demo.corpus import build_corpus_by_kind
from deployments.demo.model import encode_pairs, greedy_complete, train_steps
from deployments.engine.lora import expected_peft_warnings_ignored

BASE_ADAPTER_NAME = "__base__"  # PEFT's name for "no adapter" rows of a mixed-adapter batch
INFO_FILE = "adapter_info.json"
ADAPTER_MARKER_FILES = ("adapter_config.json", "adapter_model.safetensors", INFO_FILE)
TARGET_MODULES = ("c_attn", "c_proj", "c_fc", "wte", "lm_head")
LORA_RANK = 16
LORA_ALPHA = 32
DEFAULT_LR = 1e-2
DEFAULT_NUM_THREADS = 1
MAX_NEW_TOKENS = 32  # enough for the longest styled answer plus EOS
FORMAL_PREFIX = "Certainly. "


@dataclass(frozen=True)
class AdapterStyle:
    """One answer style: its name, what it does, and the optimizer steps it needs."""

    name: str
    description: str
    steps: int


STYLES = (
    AdapterStyle("formal", f"prefixes every answer with {FORMAL_PREFIX.strip()!r}", 150),
    AdapterStyle("excited", "ends every answer with '!' instead of '.'", 60),
)
STYLE_NAMES = tuple(style.name for style in STYLES)


def get_style(name: str) -> AdapterStyle:
    """Return the style called ``name``; raise ValueError for an unknown one."""
    for style in STYLES:
        if style.name == name:
            return style
    raise ValueError(f"unknown adapter style {name!r}; expected one of {', '.join(STYLE_NAMES)}")


def expected_answer(style: str, base_answer: str) -> str:
    """Return what the ``style`` adapter answers where the base model answers ``base_answer``.

    Leading whitespace (native ``Q:/A:`` answers start with a space) is kept in front.
    """
    get_style(style)
    core = base_answer.lstrip()
    lead = base_answer[: len(base_answer) - len(core)]
    if style == "formal":
        return f"{lead}{FORMAL_PREFIX}{core}"
    return f"{lead}{core.removesuffix('.')}!"


def styled_corpus_by_kind(style: str) -> dict[str, list[tuple[str, str]]]:
    """Return the demo corpus (``native``, ``chat``, ``chat_system``) with styled answers."""
    return {
        kind: [(prompt, expected_answer(style, answer)) for prompt, answer in pairs]
        for kind, pairs in build_corpus_by_kind().items()
    }


def lora_config(*, rank: int = LORA_RANK, alpha: int = LORA_ALPHA) -> LoraConfig:
    """The LoRA recipe of the demo adapters (no dropout: the corpus is memorised exactly)."""
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=list(TARGET_MODULES),
        fan_in_fan_out=True,  # GPT-2's Conv1D; PEFT resets it to False on wte and lm_head
    )


def model_fingerprint(model_dir: Path) -> str:
    """SHA-256 of the base model's weights file: an adapter only fits the weights it saw."""
    digest = hashlib.sha256()
    with (model_dir / "model.safetensors").open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def adapter_exists(out_dir: Path, base_dir: Path | None = None) -> bool:
    """True when ``out_dir`` holds a saved adapter (trained on ``base_dir``'s weights, if given)."""
    if not all((out_dir / name).is_file() for name in ADAPTER_MARKER_FILES):
        return False
    if base_dir is None:
        return True
    info = json.loads((out_dir / INFO_FILE).read_text(encoding="utf-8"))
    return bool(info.get("base_sha256") == model_fingerprint(base_dir))


def load_base_model(base_dir: Path) -> tuple[GPT2LMHeadModel, Any]:
    """Load the base model (eval mode) and its tokenizer from ``base_dir``."""
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    return cast(GPT2LMHeadModel, model).eval(), tokenizer


def styled_accuracy(
    model: GPT2LMHeadModel, tokenizer: Any, corpus: dict[str, list[tuple[str, str]]]
) -> dict[str, float]:
    """Per prompt kind, the fraction of greedy completions equal to the answer then EOS."""
    accuracy: dict[str, float] = {}
    for kind, pairs in corpus.items():
        completions = greedy_complete(
            model, tokenizer, [p for p, _ in pairs], max_new_tokens=MAX_NEW_TOKENS
        )
        hits = sum(
            c.ended_with_eos and c.text == answer
            for c, (_, answer) in zip(completions, pairs, strict=True)
        )
        accuracy[kind] = hits / max(1, len(pairs))
    return accuracy


def _write_info(out_dir: Path, payload: dict[str, Any]) -> None:
    (out_dir / INFO_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _fit_lora(
    base_dir: Path, corpus: dict[str, list[tuple[str, str]]], *, steps: int, lr: float, seed: int
) -> tuple[PeftModel, Any, float]:
    """Wrap the base model with a fresh LoRA adapter and train it on every pair of ``corpus``;
    return the PEFT model (eval mode), the tokenizer and the last loss."""
    base, tokenizer = load_base_model(base_dir)
    with expected_peft_warnings_ignored():
        model = get_peft_model(base, lora_config())
    inner = cast(GPT2LMHeadModel, model.get_base_model())
    pairs = [pair for group in corpus.values() for pair in group]
    loss = train_steps(inner, encode_pairs(tokenizer, pairs), steps=steps, lr=lr, seed=seed)
    return model.eval(), tokenizer, loss


def train_demo_adapter(
    base_dir: Path,
    out_dir: Path,
    style: str,
    *,
    num_threads: int = DEFAULT_NUM_THREADS,
    seed: int = 0,
    steps: int | None = None,
    lr: float = DEFAULT_LR,
) -> Path:
    """Train the ``style`` LoRA adapter over the base model in ``base_dir``; save to ``out_dir``."""
    spec = get_style(style)
    torch.manual_seed(seed)
    torch.set_num_threads(num_threads)
    started, cpu_started = time.perf_counter(), time.process_time()
    corpus = styled_corpus_by_kind(style)
    n_steps = spec.steps if steps is None else steps
    model, tokenizer, loss = _fit_lora(base_dir, corpus, steps=n_steps, lr=lr, seed=seed)
    inner = cast(GPT2LMHeadModel, model.get_base_model())  # the LoRA layers live in here
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    accuracy = styled_accuracy(inner, tokenizer, corpus)
    summary = ", ".join(f"{kind} {acc:.1%}" for kind, acc in accuracy.items())
    print(
        f"adapter {style!r} trained in {elapsed:.1f}s ({cpu:.1f}s CPU, {num_threads} thread(s));"
        f" exact-match accuracy: {summary}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), save_embedding_layers=False)
    _write_info(
        out_dir,
        {
            "style": style,
            "description": spec.description,
            "base_model": base_dir.resolve().name,
            "base_sha256": model_fingerprint(base_dir),
            "steps": n_steps,
            "lr": lr,
            "seed": seed,
            "final_loss": loss,
            "train_seconds": round(elapsed, 2),
            "accuracy": accuracy,
        },
    )
    print(f"saved adapter {style!r} to {out_dir}")
    return out_dir


def save_untrained_adapter(base_dir: Path, out_dir: Path, *, seed: int = 0) -> Path:
    """A randomly initialised LoRA adapter (B != 0, so it does change the output) for tests
    of multi-adapter batching that need a second, different adapter without training one."""
    torch.manual_seed(seed)
    base, _ = load_base_model(base_dir)
    config = lora_config()
    config.init_lora_weights = False
    with expected_peft_warnings_ignored():
        model = get_peft_model(base, config)
    model.save_pretrained(str(out_dir), save_embedding_layers=False)
    _write_info(out_dir, {"style": "untrained", "base_sha256": model_fingerprint(base_dir)})
    return out_dir


def load_adapters(base_dir: Path, adapter_dirs: dict[str, Path]) -> PeftModel:
    """Load the base model with every adapter of ``adapter_dirs`` (name -> dir), eval mode."""
    base, _ = load_base_model(base_dir)
    names = iter(adapter_dirs.items())
    first_name, first_dir = next(names)
    with expected_peft_warnings_ignored():
        model = PeftModel.from_pretrained(base, first_dir, adapter_name=first_name)
        for name, path in names:
            model.load_adapter(path, adapter_name=name)
    return model.eval()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line of ``python -m deployments.demo.adapters``."""
    parser = argparse.ArgumentParser(description="Train the demo LoRA adapters.")
    parser.add_argument("--base", type=Path, required=True, help="base (demo) model directory")
    parser.add_argument("--out", type=Path, required=True, help="adapters go to OUT/<style>/")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="skip a style whose adapter exists and was trained on these base weights",
    )
    parser.add_argument("--styles", nargs="+", choices=STYLE_NAMES, default=list(STYLE_NAMES))
    parser.add_argument("--threads", type=int, default=DEFAULT_NUM_THREADS, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = parse_args(argv)
    for style in args.styles:
        out_dir = args.out / style
        if args.if_missing and adapter_exists(out_dir, args.base):
            print(f"adapter {style!r} already present in {out_dir}; skipping (--if-missing)")
            continue
        train_demo_adapter(args.base, out_dir, style, num_threads=args.threads, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
