"""The response cache on the deployed graph: the official SDK, the fake provider counting
upstream calls, the ledger's hit rows."""

import sqlite3
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakes.fake_provider import FakeProvider

pytestmark = pytest.mark.integration
MODEL = "gpt-cached"  # the session gateway caches this model only (tests/conftest.py)


@pytest.fixture(autouse=True)
def clean_fake(fake_provider: FakeProvider) -> None:
    fake_provider.reset()


def ask(client: openai.OpenAI, text: str, **extra: object) -> object:
    return client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": text}], temperature=0, **extra
    )


def test_two_identical_requests_make_one_upstream_call(
    gateway: str, fake_provider: FakeProvider, ledger_path: Path
) -> None:
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0)
    text = f"cache test {time.time()}"  # unique: nothing cached from an earlier run
    first = ask(client, text)
    second = ask(client, text)
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"  # type: ignore[attr-defined]
    one, two = first.parse(), second.parse()  # type: ignore[attr-defined]
    assert one.choices[0].message.content == two.choices[0].message.content
    assert len(fake_provider.recorded()) == 1
    # A stream of the same request is replayed from the cache, chunk by chunk.
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": text}], temperature=0, stream=True
        )
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1 and "".join(pieces) == one.choices[0].message.content
    assert len(fake_provider.recorded()) == 1
    # Opting out reaches the provider again.
    ask(client, text, extra_body={"cache": False})
    assert len(fake_provider.recorded()) == 2
    status = httpx.get(f"{gateway}/api/v1/status", timeout=10).json()["cache"]
    assert status["enabled"] and status["hits"] >= 2
    ids = (first.headers["x-request-id"], second.headers["x-request-id"])  # type: ignore[attr-defined]
    rows = ledger_rows(ledger_path, ids)
    miss, hit = sorted(rows)
    assert miss[0] == 0 and miss[1] > 0
    assert hit == (1, 0.0, pytest.approx(miss[1]))


def ledger_rows(ledger_path: Path, request_ids: tuple[str, str]) -> list[tuple[int, float, float]]:
    """(cache_hit, cost_usd, saved_usd) of both requests, once the ledger has written them."""
    rows: list[tuple[int, float, float]] = []
    deadline = time.monotonic() + 10
    while len(rows) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
        with sqlite3.connect(ledger_path) as db:
            rows = db.execute(
                "SELECT cache_hit, cost_usd, saved_usd FROM usage WHERE request_id IN (?, ?)",
                request_ids,
            ).fetchall()
    return rows
