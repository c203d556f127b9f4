"""LocalModelServer without Ray: batching, chat prompts, streaming and cancellation."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from deployments.demo.corpus import SAMPLE_ANSWER, SAMPLE_PROMPT, SAMPLE_QUESTION
from deployments.engine.server import LoadedModel, LocalModelServer, load_hf_model
from serve_app.contracts.config import LocalModelConfig
from serve_app.contracts.errors import InvalidRequestError
from serve_app.contracts.wire import ChatMessage, GenerationParams, StreamChunk


def params(**overrides: Any) -> GenerationParams:
    base: dict[str, Any] = {
        "request_id": "r",
        "model_id": "demo",
        "prompt": SAMPLE_PROMPT,
        "max_tokens": 16,
        "temperature": 0.0,
    }
    return GenerationParams(**{**base, **overrides})


@pytest.fixture(scope="module")
def outside_serve(engine_runner: asyncio.Runner) -> None:
    """The session's shared loop (see conftest) patches what Serve needs outside a replica."""


@pytest.fixture(scope="module")
def runner(engine_runner: asyncio.Runner) -> asyncio.Runner:
    return engine_runner


@pytest.fixture(scope="module", params=["continuous", "static"])
def server(outside_serve: Any, demo_model_dir: Path, request: Any) -> LocalModelServer:
    """Every test runs on both engines: continuous batching and the static path."""
    config = {
        "id": "demo",
        "path": str(demo_model_dir),
        "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.05, "mode": request.param},
    }
    return LocalModelServer(config, loader=load_hf_model)


async def collect(server: LocalModelServer, p: GenerationParams) -> list[StreamChunk]:
    return [chunk async for chunk in server.generate_stream(p)]


def test_concurrent_calls_batch_and_answer_like_single_calls(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    async def scenario() -> list[Any]:
        return list(
            await asyncio.gather(
                *(server.generate(params()) for _ in range(4)), return_exceptions=False
            )
        )

    described = server.describe()
    before = described["batched_requests"], described["batches"]
    outputs = runner.run(scenario())
    assert {o.text for o in outputs} == {SAMPLE_ANSWER}
    described = server.describe()
    rows, batches = described["batched_requests"] - before[0], described["batches"] - before[1]
    if described["batching_mode"] == "static":
        assert rows == 4 and batches < 4  # at least two requests shared a batch
    else:  # decode steps: rows that decoded together share a step
        tokens = sum(o.output_tokens for o in outputs)
        assert rows <= tokens and batches < rows


def test_chat_messages_use_the_tokenizer_chat_template(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    chat = params(prompt="", messages=(ChatMessage("user", SAMPLE_QUESTION),))
    output = runner.run(server.generate(chat))
    assert output.text == SAMPLE_ANSWER.strip()
    assert server.describe()["metadata"]["chat_template"] is True


def test_stream_equals_non_stream_and_ends_with_usage(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    chunks = runner.run(collect(server, params()))
    assert "".join(c.text for c in chunks) == SAMPLE_ANSWER
    assert len([c for c in chunks if c.text]) > 1  # token by token, not one blob
    last = chunks[-1]
    assert last.finish_reason == "stop" and last.output_tokens > 0 and last.input_tokens > 0


def test_context_overflow_is_an_error_for_that_row_only(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    async def scenario() -> list[Any]:
        long = server.generate(params(prompt="zorbia " * 400, max_tokens=64))
        fine = server.generate(params())
        return list(await asyncio.gather(long, fine, return_exceptions=True))

    long, fine = runner.run(scenario())
    assert isinstance(long, InvalidRequestError) and long.code == "context_length_exceeded"
    assert fine.text == SAMPLE_ANSWER
    with pytest.raises(InvalidRequestError):
        runner.run(collect(server, params(prompt="zorbia " * 400, max_tokens=64)))


def random_model_loader(config: LocalModelConfig) -> LoadedModel:
    """A random GPT-2 over the demo tokenizer: it never says EOS on purpose, so it runs long."""
    loaded = load_hf_model(config)
    torch.manual_seed(0)
    model_config = GPT2Config(
        vocab_size=len(loaded.tokenizer),
        n_positions=512,
        n_embd=64,
        n_layer=2,
        n_head=2,
        eos_token_id=None,
    )
    return LoadedModel(
        GPT2LMHeadModel(model_config).eval(), loaded.tokenizer, loaded.device, 512, loaded.metadata
    )


@pytest.mark.parametrize("mode", ["continuous", "static"])
def test_closing_a_stream_stops_its_decode_within_a_step(
    demo_model_dir: Path, runner: asyncio.Runner, mode: str
) -> None:
    config = {
        "id": "rand",
        "path": str(demo_model_dir),
        "max_new_tokens": 400,
        "batching": {"mode": mode},
    }
    server = LocalModelServer(config, loader=random_model_loader)
    server.engine.eos_token_id = None
    static_steps = 0
    advance = server.engine._advance_rows

    def counting_advance(*args: Any) -> None:
        nonlocal static_steps
        static_steps += 1
        advance(*args)

    server.engine._advance_rows = counting_advance  # type: ignore[method-assign]

    def steps() -> int:
        return static_steps if mode == "static" else server.continuous.steps

    async def scenario() -> tuple[int, int, int]:
        stream = server.generate_stream(params(prompt="hello", max_tokens=400))
        received = 0
        async for _ in stream:
            received += 1
            if received == 3:
                break
        await stream.aclose()
        await asyncio.sleep(0.5)
        settled = steps()
        await asyncio.sleep(0.5)
        return received, settled, steps()

    received, settled, later = runner.run(scenario())
    assert received == 3
    assert settled == later  # nothing decodes any more
    assert settled < 50  # far from the 400 tokens asked for


def test_a_prompt_that_cannot_be_rendered_fails_only_its_row(
    server: LocalModelServer, runner: asyncio.Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    render = server._prompt_text

    def strict_template(p: GenerationParams) -> str:
        if p.prompt == "bad":
            raise ValueError("Conversation roles must alternate user/assistant")
        return render(p)

    monkeypatch.setattr(server, "_prompt_text", strict_template)

    async def scenario() -> list[Any]:
        calls = [server.generate(params(prompt="bad")), server.generate(params())]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    bad, good = runner.run(scenario())
    assert isinstance(bad, InvalidRequestError) and bad.param == "messages"
    assert "alternate" in bad.message
    assert good.text == SAMPLE_ANSWER


def test_n_seed_and_logprobs_work_on_both_engines(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    """Issue 12's per-row sampling runs in whichever engine the model uses."""
    asked = params(n=2, temperature=1.0, seed=7, logprobs=True, top_logprobs=2, max_tokens=12)

    async def scenario() -> list[Any]:
        first = await server.generate(asked)
        again = await server.generate(asked)
        chunks = await collect(server, asked)
        return [first, again, chunks]

    first, again, chunks = runner.run(scenario())
    assert len(first.more_choices) == 1
    assert (first.text, first.more_choices[0].text) == (again.text, again.more_choices[0].text)
    assert first.logprobs is not None and len(first.logprobs[0].top) == 2
    streamed = {0: "", 1: ""}
    for chunk in chunks:
        streamed[chunk.index] += chunk.text
    assert streamed == {0: first.text, 1: first.more_choices[0].text}
    assert {c.index for c in chunks if c.finish_reason} == {0, 1}
