"""The batched decode loop: per-row parameters, stop strings and streaming hold-back."""

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from deployments.engine.decoding import (
    BatchGenerator,
    RowState,
    SamplingParams,
    find_stop,
    sample_next_tokens,
)

CORPUS = ["the quick brown fox jumps over the lazy dog", "pack my box with five dozen jugs"] * 20


@pytest.fixture(scope="module")
def engine() -> BatchGenerator:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=bpe.get_vocab_size(), n_positions=128, n_embd=32, n_layer=2, n_head=2
    )
    model = GPT2LMHeadModel(config).eval()
    generator = BatchGenerator(model, tokenizer, torch.device("cpu"), max_context=128)
    generator.eos_token_id = None  # a random model emits EOS at random: run to max_tokens
    return generator


def greedy(max_tokens: int, stop: tuple[str, ...] = ()) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=stop)


def test_batched_rows_equal_single_rows_with_their_own_max_tokens(engine: BatchGenerator) -> None:
    prompts = [engine.encode(p) for p in ("the quick", "pack my box with five", "dog")]
    params = [greedy(5), greedy(12), greedy(1)]
    batched = engine.generate(prompts, params)
    for prompt, param, row in zip(prompts, params, batched):
        (single,) = engine.generate([prompt], [param])
        assert row.token_ids == single.token_ids
        assert row.text == single.text
        assert len(row.token_ids) <= param.max_tokens
    assert [len(r.token_ids) for r in batched] == [5, 12, 1]
    assert {r.finish_reason for r in batched} == {"length"}


def test_stop_string_cuts_text_and_ends_only_its_row(engine: BatchGenerator) -> None:
    prompt = engine.encode("the quick")
    (free,) = engine.generate([prompt], [greedy(12)])
    assert len(free.text) > 3
    stop = free.text[2:4]
    rows = engine.generate([prompt, prompt], [greedy(12, stop=(stop,)), greedy(12)])
    assert rows[0].text == free.text[: free.text.find(stop)]
    assert rows[0].finish_reason == "stop"
    assert rows[1].text == free.text and rows[1].finish_reason == "length"


def test_streamed_deltas_concatenate_to_final_text_without_stop_text(
    engine: BatchGenerator,
) -> None:
    prompt = engine.encode("pack my")
    (free,) = engine.generate([prompt], [greedy(16)])
    stop = free.text[-3:]
    params = greedy(16, stop=(stop,))
    streamed = "".join(rows[0].take_delta() for rows in engine.stream([prompt], [params]))
    (final,) = engine.generate([prompt], [params])
    assert streamed == final.text
    assert stop not in streamed


def test_hold_back_keeps_possible_stop_prefix_until_decided() -> None:
    row = RowState(params=SamplingParams(max_tokens=8, stop=("END",)), input_tokens=1)
    row.text = "hello E"
    assert row.take_delta() == "hello "
    row.text = "hello Ex"
    assert row.take_delta() == "Ex"
    row.text = "hello Ex\ufffd"
    assert row.take_delta() == ""


def test_find_stop_returns_earliest() -> None:
    assert find_stop("abcXYdefZ", ["Z", "XY"]) == 3
    assert find_stop("abc", ["Z"]) == -1


def test_sampling_is_greedy_at_zero_and_respects_tiny_top_p() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 2.9, 0.0]])
    picks = sample_next_tokens(logits, torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1e-6]))
    assert picks.tolist() == [1, 0]
