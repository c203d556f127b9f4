"""LocalEmbeddingServer without Ray, over the demo embedding model (derived from the demo)."""

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from deployments.engine.embedder import LocalEmbeddingServer, mean_pool
from serve_app.contracts.errors import InvalidRequestError
from serve_app.contracts.wire import EmbeddingParams

CAPITAL = "What is the capital of Zorbia?"


@pytest.fixture(scope="module", autouse=True)
def outside_serve() -> Any:
    """`@serve.batch` only reads the replica context for a warning; skip it outside Serve."""
    from ray.serve.batching import _BatchQueue

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            _BatchQueue, "_warn_if_max_batch_size_exceeds_max_ongoing_requests", lambda self: None
        )
        yield


@pytest.fixture(scope="module")
def runner() -> Any:
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture(scope="module")
def server(outside_serve: Any, embed_model_dir: Path) -> LocalEmbeddingServer:
    config = {
        "id": "demo-embed",
        "path": str(embed_model_dir),
        "task": "embed",
        "batching": {"max_batch_size": 4, "batch_wait_timeout_s": 0.05},
    }
    return LocalEmbeddingServer(config)


def embed(runner: Any, server: LocalEmbeddingServer, *inputs: Any) -> list[list[float]]:
    params = EmbeddingParams("r", "demo-embed", tuple(inputs))
    return runner.run(server.embed(params)).vectors


def close(a: list[float], b: list[float]) -> bool:
    return all(abs(x - y) < 1e-4 for x, y in zip(a, b, strict=True))


def test_mean_pool_ignores_padding_and_normalises() -> None:
    hidden = torch.tensor([[[3.0, 4.0], [100.0, 100.0]], [[1.0, 0.0], [0.0, 1.0]]])
    mask = torch.tensor([[1, 0], [1, 1]])
    pooled = mean_pool(hidden, mask)
    assert torch.allclose(pooled[0], torch.tensor([0.6, 0.8]))
    assert torch.allclose(pooled[1], torch.tensor([1.0, 1.0]) / math.sqrt(2))


def test_vectors_are_unit_length_and_independent_of_the_batch(
    runner: Any, server: LocalEmbeddingServer
) -> None:
    alone = embed(runner, server, CAPITAL)[0]
    assert len(alone) == server.metadata["dimensions"]
    assert math.isclose(sum(x * x for x in alone), 1.0, rel_tol=1e-5)
    longer = "A much longer sentence that pads the short one " * 3
    many = embed(runner, server, longer, CAPITAL, "x", "y", "z")  # two forward slices of 4
    assert close(many[1], alone)  # padding and slicing change nothing

    async def together() -> list[Any]:
        calls = [server.embed(EmbeddingParams(str(i), "demo-embed", (CAPITAL,))) for i in range(3)]
        return list(await asyncio.gather(*calls))

    assert all(close(out.vectors[0], alone) for out in runner.run(together()))


def test_token_arrays_equal_their_text(runner: Any, server: LocalEmbeddingServer) -> None:
    ids = server.tokenizer(CAPITAL, add_special_tokens=False)["input_ids"]
    assert close(embed(runner, server, tuple(ids))[0], embed(runner, server, CAPITAL)[0])


def test_related_sentences_are_closer_than_unrelated(
    runner: Any, server: LocalEmbeddingServer
) -> None:
    a, b, c = embed(runner, server, CAPITAL, "Which city is the capital of Zorbia?", "2 + 2 = 4")

    def cosine(u: list[float], v: list[float]) -> float:
        return sum(x * y for x, y in zip(u, v, strict=True))

    assert cosine(a, b) > cosine(a, c)


def test_bad_token_ids_are_a_400_for_that_request_only(
    runner: Any, server: LocalEmbeddingServer
) -> None:
    with pytest.raises(InvalidRequestError, match="outside"):
        embed(runner, server, (10**9,))
    assert embed(runner, server, "still fine")
