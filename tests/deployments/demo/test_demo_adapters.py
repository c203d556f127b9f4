"""Tests for the demo LoRA adapters (PEFT) over the demo model.

One adapter (``formal``) is trained per session (about 10-15 s on one CPU thread) and a second,
untrained random adapter is saved next to it, so that mixed-adapter batches have two different
adapters and the base model to route.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoTokenizer, GPT2LMHeadModel, PreTrainedTokenizerFast

from deployments.demo.adapters import (
    BASE_ADAPTER_NAME,
    INFO_FILE,
    MAX_NEW_TOKENS,
    STYLE_NAMES,
    adapter_exists,
    expected_answer,
    load_adapters,
    load_base_model,
    main,
    styled_corpus_by_kind,
)
from deployments.demo.corpus import SAMPLE_ANSWER, SAMPLE_PROMPT, build_corpus_by_kind

STYLE = "formal"
RANDOM = "random"


@pytest.fixture(scope="module")
def tokenizer(demo_model_dir: Path) -> PreTrainedTokenizerFast:
    loaded = AutoTokenizer.from_pretrained(demo_model_dir)
    assert isinstance(loaded, PreTrainedTokenizerFast)
    return loaded


@pytest.fixture()
def model(demo_model_dir: Path, demo_adapters_dir: Path, untrained_adapter_dir: Path) -> PeftModel:
    """Base model with the trained ``formal`` adapter (active) and the random one loaded;
    function-scoped because tests switch the active adapter."""
    adapters = {STYLE: demo_adapters_dir / STYLE, RANDOM: untrained_adapter_dir}
    return load_adapters(demo_model_dir, adapters)


def _sample_pairs() -> list[tuple[str, str]]:
    """Every 7th fact of each prompt kind, base answers (about 45 pairs)."""
    return [pair for pairs in build_corpus_by_kind().values() for pair in pairs[::7]]


@torch.no_grad()
def _greedy(
    model: PeftModel | GPT2LMHeadModel,
    tokenizer: PreTrainedTokenizerFast,
    prompts: list[str],
    adapter_names: list[str] | None = None,
) -> list[str]:
    """Greedy completions: the text up to EOS, marked ``<no eos>`` when EOS never came."""
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    extra = {} if adapter_names is None else {"adapter_names": adapter_names}
    output = model.generate(
        **inputs,
        max_new_tokens=MAX_NEW_TOKENS,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )
    texts: list[str] = []
    for row in output[:, inputs["input_ids"].shape[1] :].tolist():
        eos = tokenizer.eos_token_id
        ended = eos in row
        text = str(tokenizer.decode(row[: row.index(eos)] if ended else row))
        texts.append(text if ended else f"<no eos>{text}")
    return texts


def test_expected_answer_styles() -> None:
    assert expected_answer("formal", SAMPLE_ANSWER) == " Certainly. Velmora."
    assert expected_answer("formal", "Zelo Nailey.") == "Certainly. Zelo Nailey."
    assert expected_answer("excited", SAMPLE_ANSWER) == " Velmora!"
    assert expected_answer("excited", "The reedeel is scarlet.") == "The reedeel is scarlet!"
    with pytest.raises(ValueError, match="unknown adapter style"):
        expected_answer("shout", SAMPLE_ANSWER)


@pytest.mark.parametrize("style", STYLE_NAMES)
def test_styled_corpus_keeps_prompts_and_changes_every_answer(style: str) -> None:
    base, styled = build_corpus_by_kind(), styled_corpus_by_kind(style)
    assert base.keys() == styled.keys()
    for kind in base:
        assert [p for p, _ in base[kind]] == [p for p, _ in styled[kind]]
        assert all(a != s for (_, a), (_, s) in zip(base[kind], styled[kind], strict=True))


def test_saved_adapter_holds_only_lora_weights(demo_adapters_dir: Path) -> None:
    adapter_dir = demo_adapters_dir / STYLE
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert {"c_attn", "c_proj", "c_fc"} <= set(config["target_modules"])
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as weights:
        keys = list(weights.keys())
    assert keys and all("lora_" in key for key in keys), keys
    info = json.loads((adapter_dir / INFO_FILE).read_text(encoding="utf-8"))
    assert info["style"] == STYLE and info["base_model"] == "demo"
    assert all(acc >= 0.9 for acc in info["accuracy"].values()), info["accuracy"]


def test_adapter_answers_in_its_style(model: PeftModel, tokenizer: PreTrainedTokenizerFast) -> None:
    pairs = _sample_pairs()
    texts = _greedy(model, tokenizer, [p for p, _ in pairs])
    hits = [text == expected_answer(STYLE, a) for text, (_, a) in zip(texts, pairs, strict=True)]
    assert sum(hits) / len(hits) >= 0.9, [(t, a) for t, (_, a) in zip(texts, pairs) if t != a]
    assert texts[0] == expected_answer(STYLE, SAMPLE_ANSWER)


def test_disabled_adapter_is_the_base_model(
    model: PeftModel, tokenizer: PreTrainedTokenizerFast, demo_model_dir: Path
) -> None:
    pairs = _sample_pairs()
    prompts = [p for p, _ in pairs]
    with model.disable_adapter():
        disabled = _greedy(model, tokenizer, prompts)
    base, _ = load_base_model(demo_model_dir)
    assert disabled == _greedy(base, tokenizer, prompts)
    hits = sum(text == answer for text, (_, answer) in zip(disabled, pairs, strict=True))
    assert hits / len(pairs) >= 0.9


MIXED = [STYLE, BASE_ADAPTER_NAME, RANDOM, STYLE, BASE_ADAPTER_NAME]


def _mixed_prompts() -> list[str]:
    """Prompts of different lengths (native and chat), so the batch is really left-padded."""
    kinds = build_corpus_by_kind()
    picks = [("chat_system", 45), ("native", 71), ("chat", 99), ("native", 7)]
    return [SAMPLE_PROMPT, *(kinds[kind][index][0] for kind, index in picks)]


@torch.no_grad()
def _single_row_logits(
    model: PeftModel, inputs: dict[str, torch.Tensor], name: str
) -> torch.Tensor:
    if name == BASE_ADAPTER_NAME:
        with model.disable_adapter():
            return model(**inputs).logits
    model.set_adapter(name)
    return model(**inputs).logits


def test_mixed_adapter_batch_forward_matches_single_rows(
    model: PeftModel, tokenizer: PreTrainedTokenizerFast
) -> None:
    inputs = dict(tokenizer(_mixed_prompts(), return_tensors="pt", padding=True))
    assert (inputs["attention_mask"][:, 0] == 0).any(), "expected left padding"
    with torch.no_grad():
        mixed = model(**inputs, adapter_names=MIXED).logits
    for row, name in enumerate(MIXED):
        one = {key: value[row : row + 1] for key, value in inputs.items()}
        real = one["attention_mask"][0].bool()
        single = _single_row_logits(model, one, name)[0, real]
        torch.testing.assert_close(mixed[row, real], single, rtol=1e-4, atol=1e-4)
        others = {n for n in MIXED if n != name}
        for other in others:  # the rows really differ between adapters: routing matters
            assert not torch.allclose(single, _single_row_logits(model, one, other)[0, real])


def test_mixed_adapter_batch_generate_gives_each_row_its_style(
    model: PeftModel, tokenizer: PreTrainedTokenizerFast
) -> None:
    prompts = _mixed_prompts()
    answers = dict(pair for pairs in build_corpus_by_kind().values() for pair in pairs)
    texts = _greedy(model, tokenizer, prompts, adapter_names=MIXED)
    for text, prompt, name in zip(texts, prompts, MIXED, strict=True):
        if name == STYLE:
            assert text == expected_answer(STYLE, answers[prompt])
        elif name == BASE_ADAPTER_NAME:
            assert text == answers[prompt]
    model.set_adapter(RANDOM)
    assert texts[2] == _greedy(model, tokenizer, [prompts[2]])[0]


def test_if_missing_skips_adapter_trained_on_same_base(
    demo_model_dir: Path, demo_adapters_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = demo_adapters_dir / STYLE / "adapter_model.safetensors"
    before = weights.stat().st_mtime_ns
    argv = ["--base", str(demo_model_dir), "--out", str(demo_adapters_dir), "--if-missing"]
    assert main([*argv, "--styles", STYLE]) == 0
    assert "skipping" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == before


def test_adapter_exists_checks_the_base_fingerprint(
    demo_model_dir: Path, demo_adapters_dir: Path, tmp_path: Path
) -> None:
    copy = shutil.copytree(demo_adapters_dir / STYLE, tmp_path / STYLE)
    assert adapter_exists(copy, demo_model_dir)
    info = json.loads((copy / INFO_FILE).read_text(encoding="utf-8"))
    info["base_sha256"] = "0" * 64
    (copy / INFO_FILE).write_text(json.dumps(info), encoding="utf-8")
    assert adapter_exists(copy) and not adapter_exists(copy, demo_model_dir)
    assert not adapter_exists(tmp_path / "missing")
