"""Build the demo "fine-tuned" model: a tiny GPT-2 trained from scratch on fictional facts.

The model only knows the invented facts of :mod:`deployments.demo.corpus`, so a correct
answer proves that the gateway really served *this* model. Nothing is downloaded: the
byte-level BPE tokenizer and the model are both trained locally, on CPU, in seconds.

Usage::

    python -m deployments.demo.model --out models/demo [--if-missing]
        [--layers N --width N --heads N --steps N --seed N --lr F --threads N]

The default size (2 layers, width 128) trains to 100% exact-match accuracy on every
corpus prompt. The benchmark size (``--layers 6 --width 512 --heads 8``) uses the
same recipe with a width-scaled learning rate; pass a small ``--steps`` to build it fast.
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

from deployments.demo.corpus import (
    DEFAULT_CHAT_TEMPLATE,
    EOS_TOKEN,
    PAD_TOKEN,
    SAMPLE_ANSWER,
    SAMPLE_FACT_INDICES,
    SAMPLE_PROMPT,
    SPECIAL_TOKENS,
    build_corpus_by_kind,
    build_facts,
)

DEFAULT_STEPS = 400
DEFAULT_LR = 5e-3
BATCH_SIZE = 32
WARMUP_FRACTION = 0.05
DEFAULT_NUM_THREADS = 2
FACTS_FILE = "demo_facts.json"
MODEL_MARKER_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
IGNORE_INDEX = -100  # label value that cross-entropy ignores


@dataclass(frozen=True)
class TrainingBatch:
    """Right-padded token tensors with the loss masked (IGNORE_INDEX) on prompt and pad tokens."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def select(self, rows: torch.Tensor) -> "TrainingBatch":
        """Return the sub-batch made of ``rows``."""
        return TrainingBatch(self.input_ids[rows], self.attention_mask[rows], self.labels[rows])


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
        padding_side="left",
        model_max_length=n_positions,
        chat_template=DEFAULT_CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def _strip_markers(texts: Sequence[str]) -> list[str]:
    """Remove special-token markers so BPE merges are spent on real words only."""
    stripped = list(texts)
    for token in SPECIAL_TOKENS:
        stripped = [text.replace(token, "\n") for text in stripped]
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
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
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
    keep = targets != IGNORE_INDEX
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
    size = batch.input_ids.shape[0]
    loss = torch.tensor(float("nan"))
    for step, rows in enumerate(_minibatches(size, min(BATCH_SIZE, size), steps, generator)):
        loss = answer_loss(model, batch.select(rows))
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
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        inputs = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad
        )
        for row in output[:, inputs["input_ids"].shape[1] :].tolist():
            ended = eos in row
            text = tokenizer.decode(
                row[: row.index(eos)] if ended else row, skip_special_tokens=True
            )
            completions.append(Completion(str(text), ended))
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


def default_lr(n_embd: int) -> float:
    """Peak learning rate: :data:`DEFAULT_LR` at width 128, scaled down for wider models."""
    return DEFAULT_LR * min(1.0, 128 / n_embd)


def model_exists(out_dir: Path) -> bool:
    """Return True when ``out_dir`` already holds a saved config, weights and tokenizer."""
    return all((out_dir / name).is_file() for name in MODEL_MARKER_FILES)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> None:
    """Save ``tokenizer`` in a layout that transformers 4.x and 5.x both load.

    The chat template goes inline into ``tokenizer_config.json`` and the class is recorded
    as ``PreTrainedTokenizerFast`` (transformers 5 would write ``TokenizersBackend``).
    """
    tokenizer.save_pretrained(out_dir, save_jinja_files=False)
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _write_facts(
    out_dir: Path, corpus: dict[str, list[tuple[str, str]]], accuracy: dict[str, float]
) -> None:
    """Write sample questions, (prompt, answer) pairs per kind and the measured accuracy."""
    samples = [
        {"kind": kind, "prompt": prompt, "answer": answer}
        for kind, pairs in corpus.items()
        for prompt, answer in (pairs[i] for i in SAMPLE_FACT_INDICES)
    ]
    facts = build_facts()
    questions = [facts[i]._asdict() for i in SAMPLE_FACT_INDICES]
    payload = {
        "sample_prompt": SAMPLE_PROMPT,
        "sample_answer": SAMPLE_ANSWER,
        "questions": questions,
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
    lr: float | None = None,
    num_threads: int = DEFAULT_NUM_THREADS,
) -> Path:
    """Train tokenizer and model on the demo corpus, report exact-match accuracy, save both."""
    torch.manual_seed(seed)
    torch.set_num_threads(num_threads)
    started = time.perf_counter()
    corpus = build_corpus_by_kind()
    pairs = [pair for group in corpus.values() for pair in group]
    tokenizer = build_tokenizer(
        [p + a for p, a in pairs], vocab_size=vocab_size, n_positions=n_positions
    )
    model = build_model(
        tokenizer, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=n_positions
    )
    peak_lr = default_lr(n_embd) if lr is None else lr
    train_steps(model, encode_pairs(tokenizer, pairs), steps=steps, lr=peak_lr, seed=seed)
    elapsed = time.perf_counter() - started
    accuracy = {kind: exact_match_accuracy(model, tokenizer, grp) for kind, grp in corpus.items()}
    summary = ", ".join(f"{kind} {acc:.1%} ({len(corpus[kind])})" for kind, acc in accuracy.items())
    print(f"trained in {elapsed:.1f}s on {num_threads} thread(s); exact-match accuracy: {summary}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    save_tokenizer(tokenizer, out_dir)
    _write_facts(out_dir, corpus, accuracy)
    print(f"saved demo model to {out_dir}")
    return out_dir


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line of ``python -m deployments.demo.model``."""
    parser = argparse.ArgumentParser(description="Train the demo fine-tuned GPT-2 model.")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--if-missing", action="store_true", help="skip training if --out already holds a model"
    )
    parser.add_argument("--layers", type=int, default=2, help="transformer layers")
    parser.add_argument("--width", type=int, default=128, help="embedding width (n_embd)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimizer steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate")
    parser.add_argument("--threads", type=int, default=DEFAULT_NUM_THREADS, help="torch threads")
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
        num_threads=args.threads,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())


def save_untrained_model(
    tokenizer_dir: Path,
    out_dir: Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    n_positions: int = 512,
    seed: int = 0,
) -> Path:
    """A random GPT-2 over a trained tokenizer that never emits EOS: greedy decoding always
    runs to max_tokens. Used where generation length must be known (streaming tests, the
    batching benchmark's compute-bound variant)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        eos_token_id=eos,
        bos_token_id=eos,
    )
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        # Never EOS, whatever the seed and size: the final layer norm's output is zero-mean
        # before its bias, so with a bias of ones and EOS's (tied) output row all -100, the
        # EOS logit is -100 x n_embd for every hidden state; other logits move by
        # sum(row) only.
        model.transformer.ln_f.bias.fill_(1.0)
        model.transformer.wte.weight[eos] = -100.0
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
