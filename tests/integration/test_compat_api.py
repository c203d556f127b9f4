"""OpenAI- and Anthropic-compatible API driven by the official SDKs, local and commercial."""

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from deployments.demo.corpus import SAMPLE_ANSWER, SAMPLE_PROMPT, SAMPLE_QUESTION
from tests.fakes.fake_provider import FakeProvider

pytestmark = pytest.mark.integration
QUESTION = [{"role": "user", "content": SAMPLE_QUESTION}]


@pytest.fixture(autouse=True)
def clean_fake(fake_provider: FakeProvider) -> None:
    fake_provider.reset()


def test_openai_chat_local_stream_equals_non_stream(oai: openai.OpenAI) -> None:
    full = oai.chat.completions.create(model="demo", messages=QUESTION, temperature=0)
    assert full.choices[0].message.content == SAMPLE_ANSWER.strip()
    assert full.choices[0].finish_reason == "stop"
    assert full.usage is not None and full.usage.completion_tokens > 0
    chunks = list(
        oai.chat.completions.create(
            model="demo",
            messages=QUESTION,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[-1].choices == [] and chunks[-1].usage == full.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_openai_completions_and_models(oai: openai.OpenAI) -> None:
    done = oai.completions.create(model="demo", prompt=SAMPLE_PROMPT, max_tokens=16, temperature=0)
    assert done.choices[0].text == SAMPLE_ANSWER
    streamed = "".join(
        c.choices[0].text
        for c in oai.completions.create(
            model="demo", prompt=SAMPLE_PROMPT, max_tokens=16, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == SAMPLE_ANSWER
    ids = {m.id for m in oai.models.list()}
    assert {"demo", "random", "gpt-4o-mini", "claude-haiku-4-5"} <= ids


def test_async_openai_streams_a_commercial_model(gateway: str, fake_provider: FakeProvider) -> None:
    async def scenario() -> tuple[str, str]:
        client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=QUESTION, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        full = await client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
        return text, full.choices[0].message.content or ""

    text, full = asyncio.run(scenario())
    assert text == full == fake_provider.reply_for("openai", "gpt-4o-mini")


def test_anthropic_sdk_local_and_commercial(
    claude: anthropic.Anthropic, fake_provider: FakeProvider
) -> None:
    local = claude.messages.create(model="demo", max_tokens=16, messages=QUESTION)
    assert local.content[0].text == SAMPLE_ANSWER.strip() and local.stop_reason == "end_turn"
    with claude.messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=QUESTION
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    expected = fake_provider.reply_for("anthropic", "claude-haiku-4-5-20251001")
    assert text == expected and final.usage.output_tokens == FakeProvider.count_tokens(expected)
    # an Anthropic-format request reaching an OpenAI model, translated both ways
    crossed = claude.messages.create(
        model="gpt-4o-mini", max_tokens=64, messages=QUESTION, system="be brief"
    )
    assert crossed.content[0].text == fake_provider.reply_for("openai", "gpt-4o-mini")
    sent = fake_provider.recorded()[-1]["json"]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}


def test_errors_use_each_api_shape(
    oai: openai.OpenAI, claude: anthropic.Anthropic, gateway: str
) -> None:
    with pytest.raises(openai.NotFoundError) as openai_error:
        oai.chat.completions.create(model="nope", messages=QUESTION)
    assert openai_error.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as anthropic_error:
        claude.messages.create(model="nope", max_tokens=5, messages=QUESTION)
    assert anthropic_error.value.body["type"] == "error"  # type: ignore[index]
    bad = httpx.post(f"{gateway}/v1/messages", json={"model": "demo", "messages": QUESTION})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert bad.headers["x-request-id"]


def test_first_token_of_a_64_token_local_generation_arrives_early(gateway: str) -> None:
    body = {"prompt": "hello", "model_id": "random", "max_tokens": 64, "stream": True}
    arrivals: list[float] = []
    final: dict[str, Any] = {}
    started = time.perf_counter()
    with httpx.stream("POST", f"{gateway}/api/v1/generate", json=body, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.perf_counter() - started)
                final = json.loads(line[6:])
    assert final["metrics"]["output_tokens"] == 64
    assert len(arrivals) > 10
    assert arrivals[0] < 0.5 * arrivals[-1]
    assert final["metrics"]["time_to_first_token_ms"] < final["metrics"]["latency_ms"]


def ledger_row(ledger_path: Path, request_id: str) -> tuple[Any, ...] | None:
    with sqlite3.connect(ledger_path) as connection:
        return connection.execute(
            "SELECT outcome, status, output_tokens FROM usage WHERE request_id = ?",
            (request_id,),
        ).fetchone()


def test_client_disconnect_is_recorded_with_what_was_produced(
    gateway: str, ledger_path: Path
) -> None:
    body = {"prompt": "hello", "model_id": "random", "max_tokens": 128, "stream": True}
    with httpx.stream("POST", f"{gateway}/api/v1/generate", json=body, timeout=60) as response:
        rid = response.headers["x-request-id"]
        for index, _ in enumerate(response.iter_lines()):
            if index > 8:
                break
    deadline = time.monotonic() + 10
    row = None
    while row is None and time.monotonic() < deadline:
        time.sleep(0.3)
        row = ledger_row(ledger_path, rid)
    assert row is not None
    outcome, status, output_tokens = row
    assert (outcome, status) == ("cancelled", 499)
    assert 0 < output_tokens < 128
