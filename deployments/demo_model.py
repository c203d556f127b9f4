"""Build the demo "fine-tuned" model: a tiny GPT-2 trained from scratch on fictional facts.

The model only knows the invented facts of :mod:`deployments.demo_corpus`, so a correct
answer proves that the gateway really served *this* model. Nothing is downloaded: the
byte-level BPE tokenizer and the model are both trained locally, on CPU, in seconds.

Usage::

    python -m deployments.demo_model --out models/demo [--if-missing]
        [--layers N --width N --heads N --steps N --seed N]
"""

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from deployments.demo_corpus import (
    DEFAULT_CHAT_TEMPLATE,
    EOS_TOKEN,
    PAD_TOKEN,
    SAMPLE_ANSWER,
    SAMPLE_PROMPT,
    SPECIAL_TOKENS,
    build_corpus,
)

DEFAULT_STEPS = 400
DEFAULT_LR = 5e-3
BATCH_SIZE = 32
WARMUP_FRACTION = 0.05
NUM_THREADS = 2
FACTS_FILE = "demo_facts.json"
MODEL_MARKER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
N_SAMPLE_FACTS = 3


@dataclass(frozen=True)
class TrainingBatch:
    """Right-padded token tensors with the loss masked (-100) on prompt and pad tokens."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class Completion:
    """Greedy completion of one prompt: decoded text and whether EOS ended it."""

    text: str
    ended_with_eos: bool


def build_tokenizer(
    texts: Sequence[str], *, vocab_size: int, n_positions: int
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and wrap it as a left-padding HF tokenizer."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_strip_markers(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS_TOKEN, PAD_TOKEN)],
        padding_side="left",
        model_max_length=n_positions,
        chat_template=DEFAULT_CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def _strip_markers(texts: Sequence[str]) -> list[str]:
    """Remove special-token markers so BPE merges are spent on real words only."""
    stripped = []
    for text in texts:
        for token in SPECIAL_TOKENS:
            text = text.replace(token, "\n")
        stripped.append(text)
    return stripped


def encode_pairs(
    tokenizer: PreTrainedTokenizerFast, pairs: Sequence[tuple[str, str]]
) -> TrainingBatch:
    """Tokenize ``prompt + answer + EOS`` (prompt and answer separately, as at inference)."""
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
    answers = tokenizer([a for _, a in pairs], add_special_tokens=False)["input_ids"]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    width = max(len(p) + len(a) + 1 for p, a in zip(prompts, answers, strict=True))
    shape = (len(pairs), width)
    input_ids = torch.full(shape, pad, dtype=torch.long)
    labels = torch.full(shape, -100, dtype=torch.long)
    attention_mask = torch.zeros(shape, dtype=torch.long)
    for row, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        target = [*answer, eos]
        end = len(prompt) + len(target)
        input_ids[row, :end] = torch.tensor(prompt + target)
        labels[row, len(prompt) : end] = torch.tensor(target)
        attention_mask[row, :end] = 1
    return TrainingBatch(input_ids=input_ids, attention_mask=attention_mask, labels=labels)


def build_model(
    tokenizer: PreTrainedTokenizerFast, *, n_layer: int, n_embd: int, n_head: int, n_positions: int
) -> GPT2LMHeadModel:
    """Create a randomly initialised GPT-2 (no dropout) sized for ``tokenizer``."""
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return model


def _lr_factor(step: int, steps: int) -> float:
    """Linear warm-up then cosine decay to 10% of the peak learning rate."""
    warmup = max(1, int(steps * WARMUP_FRACTION))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def answer_loss(model: GPT2LMHeadModel, batch: TrainingBatch) -> torch.Tensor:
    """Next-token cross-entropy on answer tokens only (the LM head skips prompt positions)."""
    width = int(batch.attention_mask.sum(dim=1).max())
    hidden = model.transformer(
        input_ids=batch.input_ids[:, :width], attention_mask=batch.attention_mask[:, :width]
    ).last_hidden_state
    targets = batch.labels[:, 1:width]
    keep = targets != -100
    logits = model.lm_head(hidden[:, : width - 1][keep])
    return torch.nn.functional.cross_entropy(logits, targets[keep])


def _minibatches(
    size: int, batch_size: int, steps: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Yield ``steps`` index tensors, walking seeded random permutations of ``range(size)``."""
    order, cursor = torch.randperm(size, generator=generator), 0
    for _ in range(steps):
        if cursor + batch_size > size:
            order, cursor = torch.randperm(size, generator=generator), 0
        yield order[cursor : cursor + batch_size]
        cursor += batch_size


def train_steps(
    model: GPT2LMHeadModel, batch: TrainingBatch, *, steps: int, lr: float, seed: int = 0
) -> float:
    """Run ``steps`` AdamW minibatch steps over ``batch``; return the last loss."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, foreach=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, steps))
    generator = torch.Generator().manual_seed(seed)
    batch_size = min(BATCH_SIZE, batch.input_ids.shape[0])
    loss = torch.tensor(float("nan"))
    for step, rows in enumerate(_minibatches(batch.input_ids.shape[0], batch_size, steps, generator)):
        loss = answer_loss(
            model, TrainingBatch(batch.input_ids[rows], batch.attention_mask[rows], batch.labels[rows])
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:4d}/{steps} loss {loss.item():.4f}", flush=True)
    model.eval()
    return float(loss.item())


@torch.no_grad()
def greedy_complete(
    model: GPT2LMHeadModel,
    tokenizer: PreTrainedTokenizerFast,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 16,
    batch_size: int = 100,
) -> list[Completion]:
    """Greedily complete ``prompts`` in left-padded batches; stop at EOS."""
    completions: list[Completion] = []
    eos = tokenizer.eos_token_id
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        inputs = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        for row in output[:, inputs["input_ids"].shape[1] :].tolist():
            ended = eos in row
            tokens = row[: row.index(eos)] if ended else row
            completions.append(Completion(tokenizer.decode(tokens, skip_special_tokens=True), ended))
    return completions


def exact_match_accuracy(
    model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, pairs: Sequence[tuple[str, str]]
) -> float:
    """Fraction of ``pairs`` whose greedy completion is exactly the answer followed by EOS."""
    completions = greedy_complete(model, tokenizer, [p for p, _ in pairs])
    hits = sum(
        c.ended_with_eos and c.text == answer
        for c, (_, answer) in zip(completions, pairs, strict=True)
    )
    return hits / max(1, len(pairs))


def model_exists(out_dir: Path) -> bool:
    """True when ``out_dir`` already holds a saved model config and tokenizer."""
    return all((out_dir / name).is_file() for name in MODEL_MARKER_FILES)


def _split_corpus(
    corpus: Sequence[tuple[str, str]],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split the corpus into (native, chat) pairs; chat prompts start with a role marker."""
    native = [pair for pair in corpus if not pair[0].startswith("<|")]
    chat = [pair for pair in corpus if pair[0].startswith("<|")]
    return native, chat


def _write_facts(out_dir: Path, corpus: Sequence[tuple[str, str]], accuracy: dict[str, float]) -> None:
    """Write a few (prompt, answer) pairs and the measured accuracy for tests and docs."""
    native, chat = _split_corpus(corpus)
    samples = [
        {"kind": kind, "prompt": prompt, "answer": answer}
        for kind, group in (("native", native), ("chat", chat))
        for prompt, answer in group[:N_SAMPLE_FACTS]
    ]
    payload = {
        "sample_prompt": SAMPLE_PROMPT,
        "sample_answer": SAMPLE_ANSWER,
        "facts": samples,
        "accuracy": accuracy,
    }
    (out_dir / FACTS_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def train_demo_model(
    out_dir: Path,
    *,
    n_layer: int = 2,
    n_embd: int = 128,
    n_head: int = 4,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    vocab_size: int = 4096,
    n_positions: int = 256,
    lr: float = DEFAULT_LR,
) -> Path:
    """Train tokenizer and model on the demo corpus, verify them, save to ``out_dir``."""
    torch.manual_seed(seed)
    torch.set_num_threads(NUM_THREADS)
    started = time.perf_counter()
    corpus = build_corpus()
    tokenizer = build_tokenizer(
        [p + a for p, a in corpus], vocab_size=vocab_size, n_positions=n_positions
    )
    model = build_model(
        tokenizer, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=n_positions
    )
    train_steps(model, encode_pairs(tokenizer, corpus), steps=steps, lr=lr, seed=seed)
    trained_s = time.perf_counter() - started
    native, chat = _split_corpus(corpus)
    accuracy = {
        "native": exact_match_accuracy(model, tokenizer, native),
        "chat": exact_match_accuracy(model, tokenizer, chat),
    }
    print(
        f"trained in {trained_s:.1f}s; exact-match accuracy: "
        f"native {accuracy['native']:.1%} ({len(native)}), chat {accuracy['chat']:.1%} ({len(chat)})"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _write_facts(out_dir, corpus, accuracy)
    print(f"saved demo model to {out_dir}")
    return out_dir


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line of ``python -m deployments.demo_model``."""
    parser = argparse.ArgumentParser(description="Train the demo fine-tuned GPT-2 model.")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--if-missing", action="store_true", help="skip training if --out already holds a model"
    )
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = parse_args(argv)
    if args.if_missing and model_exists(args.out):
        print(f"demo model already present in {args.out}; skipping training (--if-missing)")
        return 0
    train_demo_model(
        args.out,
        n_layer=args.layers,
        n_embd=args.width,
        n_head=args.heads,
        steps=args.steps,
        seed=args.seed,
        lr=args.lr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
