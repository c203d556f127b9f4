"""Fixtures for LocalModelServer tests outside Serve."""

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def engine_runner() -> Iterator[asyncio.Runner]:
    """One event loop for every LocalModelServer test of the session: a `@serve.batch`
    queue belongs to the decorated method (one per process, as one replica per process in
    Serve) and is bound to the loop of its first call, so every module must share it."""
    from ray.serve.batching import _BatchQueue

    with pytest.MonkeyPatch.context() as patch, asyncio.Runner() as loop_runner:
        # `@serve.batch` only reads the replica context for a warning; skip it outside Serve.
        patch.setattr(
            _BatchQueue, "_warn_if_max_batch_size_exceeds_max_ongoing_requests", lambda self: None
        )
        yield loop_runner
