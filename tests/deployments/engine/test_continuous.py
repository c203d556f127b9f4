"""The continuous-batching engine without Ray: rows join at the next step and leave at once,
with the same tokens as a request decoded alone; stop strings, cancellation, deadlines,
back-pressure, prefix reuse and mixed LoRA adapters in one running batch."""

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from deployments.engine.continuous import BASE, ContinuousEngine, Sequence
from deployments.engine.decoding import BatchGenerator, RowState, SamplingParams
from deployments.engine.lora import AdapterHost
from serve_app.contracts.config import BatchingConfig
from serve_app.contracts.errors import GatewayError, ServiceUnavailableError

CORPUS = ["the quick brown fox jumps over the lazy dog", "pack my box with five dozen jugs"] * 20
PROMPTS = ["the quick", "pack my box with five", "dog", "the quick brown fox jumps", "lazy"]


def tokenizer() -> Any:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


CONFIG = GPT2Config(vocab_size=300, n_positions=128, n_embd=32, n_layer=2, n_head=2)


@pytest.fixture(scope="module")
def generator() -> BatchGenerator:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(CONFIG).eval()
    subject = BatchGenerator(model, tokenizer(), torch.device("cpu"), max_context=128)
    subject.eos_token_id = None  # a random model emits EOS at random: run to max_tokens
    return subject


@pytest.fixture()
def engine(generator: BatchGenerator) -> Iterator[ContinuousEngine]:
    subject = ContinuousEngine(generator, BatchingConfig(max_batch_size=3, prefix_block_tokens=2))
    yield subject
    subject.stop()


class Collector:
    """Records what each sequence is delivered (on the engine thread)."""

    def __init__(self) -> None:
        self.items: dict[int, list[Any]] = {}
        self.finished: dict[int, float] = {}
        self.done = threading.Condition()

    def sequence(self, generator: BatchGenerator, key: int, prompt: str, **kw: Any) -> Sequence:
        sampling = kw.pop("sampling", SamplingParams(max_tokens=8, temperature=0.0))

        def deliver(item: Any) -> None:
            snapshot = item if isinstance(item, GatewayError) else (item.take_delta(), item)
            with self.done:
                self.items.setdefault(key, []).append(snapshot)
                if isinstance(item, GatewayError) or item.finished:
                    self.finished[key] = time.monotonic()
                    self.done.notify_all()

        return Sequence(
            prepare=lambda: generator.encode(prompt), sampling=sampling, deliver=deliver, **kw
        )

    def wait(self, keys: set[int], timeout_s: float = 20.0) -> None:
        with self.done:
            assert self.done.wait_for(lambda: keys <= set(self.finished), timeout_s)

    def row(self, key: int) -> RowState:
        last = self.items[key][-1]
        assert not isinstance(last, GatewayError), last
        row: RowState = last[1]
        return row


def alone(generator: BatchGenerator, prompt: str, params: SamplingParams) -> RowState:
    (row,) = generator.generate([generator.encode(prompt)], [params])
    return row


def test_staggered_rows_equal_rows_decoded_alone(
    generator: BatchGenerator, engine: ContinuousEngine
) -> None:
    collector = Collector()
    lengths = [5, 12, 1, 9, 20]
    for key, (prompt, length) in enumerate(zip(PROMPTS, lengths)):
        params = SamplingParams(max_tokens=length, temperature=0.0)
        engine.submit(collector.sequence(generator, key, prompt, sampling=params))
        time.sleep(0.002)
    collector.wait(set(range(len(PROMPTS))))
    for key, (prompt, length) in enumerate(zip(PROMPTS, lengths)):
        reference = alone(generator, prompt, SamplingParams(max_tokens=length, temperature=0.0))
        assert collector.row(key).token_ids == reference.token_ids
        assert collector.row(key).text == reference.text
        assert collector.row(key).finish_reason == "length"
    # Rows left when done: the steps served fewer rows than a static batch would have.
    assert engine.stepped_rows < len(PROMPTS) * max(lengths)
    assert engine.batch.size == 0 and not engine.running


def test_a_short_request_joins_a_running_long_one_and_leaves_first(
    generator: BatchGenerator, engine: ContinuousEngine
) -> None:
    collector = Collector()
    long_params = SamplingParams(max_tokens=100, temperature=0.0)
    engine.submit(collector.sequence(generator, 0, "the quick", sampling=long_params))
    time.sleep(0.05)  # the long row is decoding
    engine.submit(collector.sequence(generator, 1, "dog"))
    collector.wait({0, 1})
    assert collector.finished[1] < collector.finished[0]
    assert len(collector.row(1).token_ids) == 8 and len(collector.row(0).token_ids) == 100


def test_stop_string_ends_the_row_and_is_never_streamed(
    generator: BatchGenerator, engine: ContinuousEngine
) -> None:
    reference = alone(generator, "the quick", SamplingParams(max_tokens=12, temperature=0.0))
    stop = reference.text[4:7]
    collector = Collector()
    params = SamplingParams(max_tokens=12, temperature=0.0, stop=(stop,))
    engine.submit(collector.sequence(generator, 0, "the quick", sampling=params, stream=True))
    collector.wait({0})
    streamed = "".join(delta for delta, _ in collector.items[0])
    row = collector.row(0)
    assert row.finish_reason == "stop" and row.text == reference.text[: reference.text.find(stop)]
    assert streamed == row.text


def test_cancelled_row_leaves_within_a_step_and_others_go_on(
    generator: BatchGenerator, engine: ContinuousEngine
) -> None:
    collector = Collector()
    long_params = SamplingParams(max_tokens=100, temperature=0.0)
    doomed = collector.sequence(generator, 0, "the quick", sampling=long_params, stream=True)
    engine.submit(doomed)
    engine.submit(collector.sequence(generator, 1, "lazy", sampling=long_params))
    time.sleep(0.05)
    doomed.cancelled = True
    collector.wait({1})
    assert doomed.row is not None and len(doomed.row.token_ids) < 100
    assert len(collector.row(1).token_ids) == 100


def test_deadline_passed_in_queue_and_full_queue_answer_at_once(
    generator: BatchGenerator,
) -> None:
    subject = ContinuousEngine(generator, BatchingConfig(max_waiting=1))
    collector = Collector()
    try:
        with generator.model_lock:  # the loop is stuck in a forward pass
            subject.submit(collector.sequence(generator, 0, "dog"))
            time.sleep(0.05)  # the loop took it and waits for the lock
            late = collector.sequence(generator, 1, "dog", deadline=time.time() - 1)
            subject.submit(late)
            with pytest.raises(ServiceUnavailableError) as raised:
                subject.submit(collector.sequence(generator, 2, "dog"))
            assert raised.value.code == "backpressure" and raised.value.status_code == 503
        collector.wait({0, 1})
        error = collector.items[1][-1]
        assert isinstance(error, GatewayError) and error.code == "deadline_exceeded"
    finally:
        subject.stop()


def test_prefix_reuse_gives_the_same_tokens(generator: BatchGenerator) -> None:
    settings = BatchingConfig(prefix_block_tokens=2, prefix_cache_tokens=64)
    subject = ContinuousEngine(generator, settings)
    prompts = ["the quick brown fox jumps over", "the quick brown fox jumps over the lazy"]
    collector = Collector()
    try:
        for key, prompt in enumerate(prompts):
            subject.submit(collector.sequence(generator, key, prompt))
            collector.wait({key})
        assert subject.prefix.hits == 1 and subject.prefix.reused_tokens >= 4
        for key, prompt in enumerate(prompts):
            reference = alone(generator, prompt, SamplingParams(max_tokens=8, temperature=0.0))
            assert collector.row(key).token_ids == reference.token_ids
    finally:
        subject.stop()


def test_two_adapters_and_the_base_share_decode_steps(
    generator: BatchGenerator, tmp_path: Any
) -> None:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(CONFIG).eval()
    base = BatchGenerator(model, generator.tokenizer, torch.device("cpu"), 128)
    base.eos_token_id = None
    paths = {}
    for seed, name in enumerate(("a1", "a2"), start=1):
        torch.manual_seed(seed)
        lora = LoraConfig(r=4, target_modules=["c_attn", "c_fc"], init_lora_weights=False)
        get_peft_model(GPT2LMHeadModel(CONFIG), lora).save_pretrained(str(tmp_path / name))
        paths[name] = str(tmp_path / name)
    host = AdapterHost(base, paths, torch.device("cpu"))
    slots = [host.load("a1"), host.load("a2")]
    subject = ContinuousEngine(base, BatchingConfig(max_batch_size=3))
    collector = Collector()
    try:
        params = SamplingParams(max_tokens=10, temperature=0.0)
        adapters = ["a1", BASE, "a2"]
        for key, adapter in enumerate(adapters):
            subject.submit(
                collector.sequence(base, key, PROMPTS[key], sampling=params, adapter=adapter)
            )
        collector.wait({0, 1, 2})
        assert subject.steps < 3 * 10  # the three rows shared steps
        for key, adapter in enumerate(adapters):
            names = [adapter] if adapter != BASE else ["__base__"]
            (reference,) = base.generate([base.encode(PROMPTS[key])], [params], names)
            assert collector.row(key).token_ids == reference.token_ids
        outputs = [collector.row(key).token_ids for key in range(3)]
        assert len({tuple(o) for o in outputs}) == 3
    finally:
        subject.stop()
        del slots


def test_a_request_that_fails_to_prefill_gets_an_error_and_others_go_on(
    generator: BatchGenerator, engine: ContinuousEngine
) -> None:
    collector = Collector()
    long_params = SamplingParams(max_tokens=30, temperature=0.0)
    engine.submit(collector.sequence(generator, 0, "the quick", sampling=long_params))
    broken = collector.sequence(generator, 1, "dog")

    def explode() -> list[int]:
        raise RuntimeError("tokenizer crashed")

    broken.prepare = explode
    engine.submit(broken)
    collector.wait({0, 1})
    error = collector.items[1][-1]
    assert isinstance(error, GatewayError) and error.status_code == 500
    assert len(collector.row(0).token_ids) == 30
