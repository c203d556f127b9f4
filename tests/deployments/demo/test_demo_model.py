"""Tests for the demo corpus and the demo "fine-tuned" GPT-2 builder.

The model is trained once per module (about 20-40 s on two CPU cores) in a temporary
directory; nothing is downloaded.
"""

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from deployments.demo.corpus import (
    DEFAULT_SYSTEM_PROMPT,
    SAMPLE_ANSWER,
    SAMPLE_PROMPT,
    SAMPLE_QUESTION,
    build_corpus,
    build_corpus_by_kind,
    chat_prompt,
    render_chat_prompt,
)
from deployments.demo.model import (
    FACTS_FILE,
    build_model,
    main,
    model_exists,
)

CHAT_CASES = [
    [{"role": "user", "content": SAMPLE_QUESTION}],
    [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "Who invented the whirlpress?"},
    ],
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": SAMPLE_QUESTION},
    ],
]


@pytest.fixture(scope="module")
def model_dir(demo_model_dir: Path) -> Path:
    # One thread: the model is tiny, and two threads slow down badly on a busy 2-core box.
    return demo_model_dir


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> PreTrainedTokenizerFast:
    loaded = AutoTokenizer.from_pretrained(model_dir)
    assert isinstance(loaded, PreTrainedTokenizerFast)
    return loaded


@pytest.fixture(scope="module")
def model(model_dir: Path) -> GPT2LMHeadModel:
    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


def test_corpus_is_deterministic() -> None:
    first, second = build_corpus(), build_corpus()
    assert first == second
    assert 200 <= len(first) <= 600
    assert first[0] == (SAMPLE_PROMPT, SAMPLE_ANSWER)


def test_corpus_has_no_conflicting_or_long_answers() -> None:
    answers: dict[str, str] = {}
    for prompt, answer in build_corpus():
        assert answers.setdefault(prompt, answer) == answer, prompt
        assert answer.endswith(".")
        assert 1 <= len(answer.split()) <= 8
    native = build_corpus_by_kind()["native"]
    assert all(p.startswith("Q: ") and p.endswith("\nA:") for p, _ in native)
    assert all(a.startswith(" ") and not a.startswith("  ") for _, a in native)


def test_chat_pairs_mirror_native_facts() -> None:
    corpus = dict(build_corpus())
    assert corpus[chat_prompt(SAMPLE_QUESTION)] == SAMPLE_ANSWER.strip()
    assert corpus[chat_prompt(SAMPLE_QUESTION, DEFAULT_SYSTEM_PROMPT)] == SAMPLE_ANSWER.strip()


@pytest.mark.parametrize("messages", CHAT_CASES)
def test_render_chat_prompt_matches_tokenizer_template(
    tokenizer: PreTrainedTokenizerFast, messages: list[dict[str, str]]
) -> None:
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered == render_chat_prompt(messages)
    assert rendered.endswith("<|assistant|>\n")


def test_saved_tokenizer_settings(
    tokenizer: PreTrainedTokenizerFast, model: GPT2LMHeadModel
) -> None:
    assert tokenizer.padding_side == "left"
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token_id is not None
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.decode(tokenizer(chat_prompt("x"))["input_ids"], skip_special_tokens=True)


def _sample_pairs() -> list[tuple[str, str]]:
    """Native and chat pairs of different lengths, so the batch really needs padding."""
    by_kind = build_corpus_by_kind()
    picks = (0, 7, 45, 71, 99)
    return [by_kind[kind][i] for kind in by_kind for i in picks]


def test_model_completes_trained_prompts_in_left_padded_batch(
    tokenizer: PreTrainedTokenizerFast, model: GPT2LMHeadModel
) -> None:
    pairs = _sample_pairs()
    inputs = tokenizer([p for p, _ in pairs], return_tensors="pt", padding=True)
    assert (inputs["attention_mask"][:, 0] == 0).any(), "expected left padding"
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    for row, (prompt, answer) in zip(output[:, inputs["input_ids"].shape[1] :], pairs, strict=True):
        ids = row.tolist()
        assert tokenizer.eos_token_id in ids, prompt
        text = tokenizer.decode(ids, skip_special_tokens=True)
        assert text == answer, prompt


def test_facts_file_reports_full_accuracy(model_dir: Path) -> None:
    facts = json.loads((model_dir / FACTS_FILE).read_text(encoding="utf-8"))
    assert (facts["sample_prompt"], facts["sample_answer"]) == (SAMPLE_PROMPT, SAMPLE_ANSWER)
    assert facts["questions"][0] == {"question": SAMPLE_QUESTION, "answer": "Velmora."}
    assert all(acc >= 0.98 for acc in facts["accuracy"].values()), facts["accuracy"]
    corpus = dict(build_corpus())
    assert all(corpus[f["prompt"]] == f["answer"] for f in facts["facts"])


def test_if_missing_skips_existing_model(model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    weights = model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert model_exists(model_dir)
    assert main(["--out", str(model_dir), "--if-missing"]) == 0
    assert "skipping" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == before


def test_model_exists_is_false_for_empty_dir(tmp_path: Path) -> None:
    assert not model_exists(tmp_path)


def test_benchmark_size_builds_and_runs(tokenizer: PreTrainedTokenizerFast) -> None:
    big = build_model(tokenizer, n_layer=6, n_embd=512, n_head=8, n_positions=256)
    ids = tokenizer([SAMPLE_PROMPT], return_tensors="pt")
    with torch.no_grad():
        logits = big(**ids).logits
    assert logits.shape == (1, ids["input_ids"].shape[1], len(tokenizer))
