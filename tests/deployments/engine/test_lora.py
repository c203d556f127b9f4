"""AdapterHost without Ray: LoRA adapters loaded into one base model, mixed-adapter batches,
deletion deferred while a row uses an adapter, and base rows unaffected by loads mid-batch."""

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel

from deployments.engine.decoding import BatchGenerator, SamplingParams
from deployments.engine.lora import AdapterHost

CONFIG = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=64)
PROMPTS = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
GREEDY = SamplingParams(max_tokens=8, temperature=0.0)


class Tokenizer:
    eos_token_id = None
    pad_token_id = 0

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return " ".join(map(str, ids))


def base_model() -> Any:
    torch.manual_seed(0)
    return GPT2LMHeadModel(CONFIG).eval()


@pytest.fixture(scope="module")
def adapter_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    paths = {}
    for seed, name in enumerate(("a1", "a2"), start=1):
        torch.manual_seed(seed)
        lora = LoraConfig(r=4, target_modules=["c_attn", "c_fc"], init_lora_weights=False)
        path = tmp_path_factory.mktemp(name)
        get_peft_model(GPT2LMHeadModel(CONFIG), lora).save_pretrained(str(path))
        paths[name] = str(path)
    return paths


def host(paths: dict[str, str]) -> AdapterHost:
    engine = BatchGenerator(base_model(), Tokenizer(), torch.device("cpu"), 64)
    return AdapterHost(engine, paths, torch.device("cpu"))


def tokens(subject: AdapterHost, prompts: list[list[int]], ids: list[str | None]) -> list[Any]:
    names = subject.adapter_names(ids)
    rows = subject.engine.generate(prompts, [GREEDY] * len(prompts), names)
    return [row.token_ids for row in rows]


def wait_until(check: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(check())


def test_mixed_batch_rows_match_their_single_runs(adapter_paths: dict[str, str]) -> None:
    subject = host(adapter_paths)
    reference_base = tokens(subject, PROMPTS, [None, None, None])
    slots = [subject.load("a1"), subject.load("a2")]  # what the multiplexer's LRU holds
    assert subject.loaded == ["a1", "a2"] and subject.lora_parameters > 0
    mixed = tokens(subject, PROMPTS, ["a1", None, "a2"])
    assert mixed[1] == reference_base[1]
    assert mixed[0] == tokens(subject, PROMPTS[:1], ["a1"])[0]
    assert mixed[2] == tokens(subject, PROMPTS[2:], ["a2"])[0]
    assert mixed[0] != reference_base[0]
    del slots


def test_eviction_waits_for_the_last_row_then_frees(adapter_paths: dict[str, str]) -> None:
    subject = host(adapter_paths)
    reference = tokens(subject, PROMPTS, [None, None, None])
    slot = subject.load("a1")
    assert subject.try_pin("a1")
    slot.__del__()  # what Serve does on eviction: the row still uses it
    time.sleep(0.1)
    assert subject.lora_parameters > 0 and subject.unloads == 0
    subject.unpin("a1")  # the last row ends: deleted
    assert wait_until(lambda: subject.unloads == 1)
    assert subject.loaded == [] and subject.lora_parameters == 0
    assert not hasattr(subject.engine.model, "peft_config")  # the bare base model again
    assert tokens(subject, PROMPTS, [None, None, None]) == reference


def test_an_evicted_adapter_asked_for_again_is_kept(adapter_paths: dict[str, str]) -> None:
    subject = host(adapter_paths)
    slot = subject.load("a1")
    assert subject.try_pin("a1")
    slot.__del__()
    assert subject.try_pin("a1")  # wanted again before it was deleted
    subject.unpin("a1")
    subject.unpin("a1")
    time.sleep(0.2)
    assert subject.loaded == ["a1"] and subject.unloads == 0


def test_base_rows_are_unchanged_when_an_adapter_loads_mid_batch(
    adapter_paths: dict[str, str], tmp_path: Path
) -> None:
    subject = host(adapter_paths)
    reference = tokens(subject, PROMPTS, [None, None, None])
    names = subject.adapter_names([None, None, None])
    steps = subject.engine.stream(PROMPTS, [GREEDY] * 3, names)
    final: list[Any] = []
    for index, step in enumerate(steps):
        final = step
        if index == 2:
            slot = subject.load("a1")  # another request's adapter arrives
    assert [row.token_ids for row in final] == reference
    assert slot.adapter_id == "a1"
