"""Per-row sampling: RowSampler on known logits, and seed/n/penalties/logprobs on real models."""

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from deployments.demo.corpus import SAMPLE_ANSWER, SAMPLE_PROMPT
from deployments.engine.sampling import RowSampler, RowSampling, TokenTable, sample_rows
from deployments.engine.server import LocalModelServer, load_hf_model
from serve_app.contracts.errors import InvalidRequestError
from serve_app.contracts.wire import GenerationParams, StreamChunk

CPU = torch.device("cpu")


def sampler(**fields: Any) -> RowSampler:
    return RowSampler(RowSampling(**fields), 8, CPU)


def test_logit_bias_forces_and_bans_tokens() -> None:
    logits = torch.tensor([5.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert sampler(temperature=0.0).next_token(logits).token_id == 0
    assert sampler(temperature=0.0, logit_bias=((0, -100.0),)).next_token(logits).token_id == 1
    assert sampler(temperature=0.0, logit_bias=((6, 100.0),)).next_token(logits).token_id == 6


def test_presence_and_frequency_penalties_follow_openai() -> None:
    logits = torch.tensor([3.0, 2.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    presence = sampler(temperature=0.0, presence_penalty=1.0)
    assert [presence.next_token(logits).token_id for _ in range(3)] == [0, 1, 0]
    frequency = sampler(temperature=0.0, frequency_penalty=0.2)
    # token 0 leads by 0.5: it is chosen until it was counted 3 times (3 * 0.2 > 0.5)
    assert [frequency.next_token(logits).token_id for _ in range(4)] == [0, 0, 0, 1]
    scores = frequency.processed(logits)
    assert scores[0].item() == pytest.approx(3.0 - 3 * 0.2)
    assert scores[1].item() == pytest.approx(2.5 - 0.2)


def test_top_k_and_seed() -> None:
    logits = torch.tensor([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    top2 = sampler(temperature=5.0, top_k=2, seed=1)
    assert {top2.next_token(logits).token_id for _ in range(50)} == {0, 1}
    first = [sampler(temperature=1.0, seed=42).next_token(logits).token_id for _ in range(5)]
    same = [sampler(temperature=1.0, seed=42).next_token(logits).token_id for _ in range(5)]
    assert first == same
    one = sampler(temperature=1.0, seed=42)
    assert len({one.next_token(logits).token_id for _ in range(40)}) > 2


def test_plain_rows_sample_together_and_others_alone() -> None:
    logits = torch.tensor([[5.0, 1.0] + [0.0] * 6, [5.0, 1.0] + [0.0] * 6])
    rows = [sampler(temperature=0.0), sampler(temperature=0.0, logit_bias=((1, 50.0),))]
    assert rows[0].plain and not rows[1].plain
    picked = sample_rows(logits, rows)
    assert [p.token_id for p in picked] == [0, 1]


@pytest.fixture(scope="module")
def server(demo_model_dir: Path, engine_runner: asyncio.Runner) -> LocalModelServer:
    config = {"id": "demo", "path": str(demo_model_dir)}
    return LocalModelServer(config, loader=load_hf_model)


@pytest.fixture(scope="module")
def runner(engine_runner: asyncio.Runner) -> asyncio.Runner:
    return engine_runner


def params(**overrides: Any) -> GenerationParams:
    base: dict[str, Any] = {
        "request_id": "r",
        "model_id": "demo",
        "prompt": SAMPLE_PROMPT,
        "max_tokens": 12,
        "temperature": 0.0,
    }
    return GenerationParams(**{**base, **overrides})


def test_token_table_has_true_bytes(demo_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    table = TokenTable(tokenizer, len(tokenizer))
    ids = tokenizer("é Velmora", add_special_tokens=False)["input_ids"]
    assert b"".join(table.bytes_of(i) for i in ids) == "é Velmora".encode()
    # the byte 0xC3 alone (half of "é") is not UTF-8: an escape, as OpenAI shows it
    half = tokenizer.convert_tokens_to_ids("Ã")  # byte-level BPE's symbol for 0xC3
    assert table.bytes_of(half) == b"\xc3" and table.text_of(half) == "\\xc3"


def test_seed_gives_the_same_text_each_time(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    hot = {"temperature": 5.0, "max_tokens": 24}
    texts = [runner.run(server.generate(params(seed=7, **hot))).text for _ in range(2)]
    assert texts[0] == texts[1]
    others = {runner.run(server.generate(params(seed=s, **hot))).text for s in range(1, 6)}
    assert len(others | {texts[0]}) > 1


def test_n_choices_are_rows_of_one_batch(server: LocalModelServer, runner: asyncio.Runner) -> None:
    before = server.describe()
    output = runner.run(server.generate(params(n=3, temperature=2.0, seed=3, max_tokens=16)))
    after = server.describe()
    batches = after["batches"] - before["batches"]
    if after["batching_mode"] == "static":
        assert batches == 1
    else:  # continuous: decode steps; the three rows decode side by side
        rows = after["batched_requests"] - before["batched_requests"]
        assert rows >= 2 * batches
    assert [c.index for c in output.more_choices] == [1, 2]
    texts = [output.text] + [c.text for c in output.more_choices]
    assert len(set(texts)) > 1  # each choice samples from its own stream
    greedy = runner.run(server.generate(params(n=2)))
    assert greedy.text == greedy.more_choices[0].text == SAMPLE_ANSWER
    single = runner.run(server.generate(params()))
    assert greedy.output_tokens == 2 * single.output_tokens  # counts cover every choice


def test_logprobs_of_the_chosen_token_and_alternatives(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    output = runner.run(server.generate(params(logprobs=True, top_logprobs=3)))
    assert output.logprobs is not None and len(output.logprobs) == output.output_tokens
    assert "".join(r.token for r in output.logprobs) == output.text
    for record in output.logprobs:
        assert record.logprob <= 0 and len(record.top) == 3
        assert record.top[0].token == record.token  # greedy picks the most likely
        assert sum(math.exp(t.logprob) for t in record.top) <= 1.0 + 1e-5
        assert bytes(record.bytes or ()) == record.token.encode()


def test_streams_carry_logprobs_and_penalties_change_the_text(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    p = params(logprobs=True, top_logprobs=1)

    async def collect(p: GenerationParams) -> list[StreamChunk]:
        return [chunk async for chunk in server.generate_stream(p)]

    chunks = runner.run(collect(p))
    records = [r for c in chunks for r in (c.logprobs or ())]
    assert records == list(runner.run(server.generate(p)).logprobs or ())
    answer_ids = server.engine.encode(SAMPLE_ANSWER)
    banned = params(logit_bias=tuple((i, -100.0) for i in answer_ids[:1]))
    assert runner.run(server.generate(banned)).text != SAMPLE_ANSWER


def test_fields_the_engine_cannot_honour_are_400s(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        runner.run(server.generate(params(logit_bias=((10**6, 1.0),))))
    assert caught.value.param == "logit_bias" and "'demo'" in caught.value.message
