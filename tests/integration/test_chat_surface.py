"""The rest of the chat surface through the deployed gateway: images, structured output,
logprobs, sampling fields passed on or refused, token counting, the Anthropic stream's input
tokens, and the ledger for tool calls. The fake provider records what went upstream."""

import base64
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pytest
import yaml

from serve_app.contracts.config import SHIPPED_CATALOG
from tests.fakes.fake_features import IMAGE_TOKENS
from tests.fakes.fake_provider import FakeProvider

pytestmark = pytest.mark.integration
GPT, CLAUDE, LOCAL = "gpt-4o-mini", "claude-haiku-4-5", "demo"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "tags", "address"],
    "additionalProperties": False,
}


@pytest.fixture(autouse=True)
def clean_fake(fake_provider: FakeProvider) -> None:
    fake_provider.reset()


def upstream(fake: FakeProvider) -> dict[str, Any]:
    return fake.recorded()[-1]["json"]


def test_images_are_translated_both_ways(
    oai: openai.OpenAI, claude: anthropic.Anthropic, fake_provider: FakeProvider
) -> None:
    source = {"type": "base64", "media_type": "image/png", "data": PNG}
    blocks = [{"type": "text", "text": "What is it?"}, {"type": "image", "source": source}]
    answer = claude.messages.create(
        model=GPT, max_tokens=8, messages=[{"role": "user", "content": blocks}]
    )
    parts = upstream(fake_provider)["messages"][0]["content"]
    assert parts[1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    assert answer.usage.input_tokens == 3 + IMAGE_TOKENS  # priced from the reported usage
    url_part = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    data_part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    content = [{"type": "text", "text": "Compare"}, url_part, data_part]
    oai.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": content}])
    sent = upstream(fake_provider)["messages"][0]["content"]
    assert sent[1] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/a.png"},
    }
    assert sent[2] == {"type": "image", "source": source}


def test_images_are_refused_where_they_cannot_go(
    oai: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    data_part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What?"}, data_part]},
    ]
    with pytest.raises(openai.BadRequestError) as refused:
        oai.chat.completions.create(model=LOCAL, messages=messages)
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"]) == ("unsupported_content", "messages[1].content[1]")
    pdf = {"type": "image_url", "image_url": {"url": "data:application/pdf;base64,AAAA"}}
    with pytest.raises(openai.BadRequestError, match="not a supported image type"):
        oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": [pdf]}])
    assert fake_provider.stats() == {}


def test_structured_output_reaches_each_provider_in_its_shape(
    oai: openai.OpenAI, claude: anthropic.Anthropic, fake_provider: FakeProvider
) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }
    question = [{"role": "user", "content": "Who?"}]
    for model in (GPT, CLAUDE):
        answer = oai.chat.completions.create(model=model, messages=question, response_format=fmt)
        jsonschema.validate(json.loads(answer.choices[0].message.content), PERSON)
        body = upstream(fake_provider)
        if model == GPT:
            assert body["response_format"] == fmt
        else:
            assert body["output_config"] == {"format": {"type": "json_schema", "schema": PERSON}}
    message = claude.messages.create(
        model=GPT,
        max_tokens=64,
        messages=question,
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": PERSON}}},
    )
    jsonschema.validate(json.loads(message.content[0].text), PERSON)
    assert upstream(fake_provider)["response_format"]["json_schema"]["schema"] == PERSON


def test_sampling_fields_are_passed_on_or_refused(
    oai: openai.OpenAI, claude: anthropic.Anthropic, fake_provider: FakeProvider
) -> None:
    oai.chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": "hi"}],
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"42": -100},
        user="end-user-1",
        metadata={"team": "search"},
        service_tier="default",
        n=2,
    )
    body = upstream(fake_provider)
    assert (body["seed"], body["presence_penalty"], body["frequency_penalty"]) == (7, 0.5, -0.5)
    assert (body["logit_bias"], body["user"], body["metadata"]) == (
        {"42": -100},
        "end-user-1",
        {"team": "search"},
    )
    assert (body["n"], body["service_tier"]) == (2, "default")
    claude.messages.create(  # the 2.x SDK takes sampling fields only through extra_body
        model=CLAUDE,
        max_tokens=8,
        extra_body={"top_k": 5},
        metadata={"user_id": "u-9"},
        messages=[{"role": "user", "content": "hi"}],
    )
    body = upstream(fake_provider)
    assert (body["top_k"], body["metadata"]) == (5, {"user_id": "u-9"})
    for field, value in (("seed", 1), ("logprobs", True), ("n", 2), ("logit_bias", {"1": 1})):
        with pytest.raises(openai.BadRequestError) as refused:
            oai.chat.completions.create(
                model=CLAUDE, messages=[{"role": "user", "content": "hi"}], **{field: value}
            )
        assert refused.value.body["param"] == field  # type: ignore[index]
        assert CLAUDE in refused.value.body["message"]  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError, match="top_k"):
        claude.messages.create(
            model=GPT,
            max_tokens=8,
            extra_body={"top_k": 5},
            messages=[{"role": "user", "content": "hi"}],
        )


def test_logprobs_and_n_from_an_openai_model(
    oai: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    answer = oai.chat.completions.create(
        model=GPT, messages=[{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=2, n=2
    )
    assert [c.index for c in answer.choices] == [0, 1]
    tokens = answer.choices[0].logprobs.content  # type: ignore[union-attr]
    assert "".join(t.token for t in tokens) == answer.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 for t in tokens)
    chunks = list(
        oai.chat.completions.create(
            model=GPT,
            messages=[{"role": "user", "content": "hi"}],
            logprobs=True,
            stream=True,
        )
    )
    streamed = [
        t
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content or ()
    ]
    assert "".join(t.token for t in streamed) == answer.choices[0].message.content


def test_count_tokens_for_every_model_kind(gateway: str, fake_provider: FakeProvider) -> None:
    body = {"messages": [{"role": "user", "content": "What is the capital of Zorbia?"}]}
    counts = {}
    for model in (LOCAL, CLAUDE, GPT):
        response = httpx.post(f"{gateway}/v1/messages/count_tokens", json={**body, "model": model})
        assert response.status_code == 200, response.text
        counts[model] = response.json()
    assert counts[LOCAL]["input_tokens"] > 0 and "estimated" not in counts[LOCAL]
    assert counts[CLAUDE] == {"input_tokens": 6}  # the fake's count: the provider's endpoint
    assert fake_provider.stats() == {"/v1/messages/count_tokens": 1}
    assert counts[GPT]["estimated"] is True and counts[GPT]["tokenizer"] == "o200k_base"
    assert 10 < counts[GPT]["input_tokens"] < 30
    claude = anthropic.Anthropic(base_url=gateway, api_key="unused", max_retries=0)
    counted = claude.messages.count_tokens(model=CLAUDE, **body)  # type: ignore[arg-type]
    assert counted.input_tokens == 6


def test_anthropic_stream_served_by_gpt_reports_its_input_tokens(
    claude: anthropic.Anthropic,
) -> None:
    question = [{"role": "user", "content": "one two three four"}]
    with claude.messages.stream(model=GPT, max_tokens=16, messages=question) as stream:
        final = stream.get_final_message()
    assert final.usage.input_tokens == 4


def test_tool_calls_are_accounted_from_reported_usage(
    oai: openai.OpenAI, ledger_path: Path, fake_provider: FakeProvider
) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    answer = oai.chat.completions.create(
        model="gpt-4o",  # not gpt-limited: its 5 rpm belong to the burst test
        messages=[{"role": "user", "content": "call it"}],
        tools=tools,
        tool_choice="required",
        extra_headers={"X-Request-ID": "tool-ledger-1"},
    )
    assert answer.choices[0].finish_reason == "tool_calls"
    assert answer.usage is not None
    row = None
    for _ in range(50):
        with sqlite3.connect(ledger_path) as db:
            row = db.execute(
                "SELECT input_tokens, output_tokens, cost_usd FROM usage WHERE request_id = ?",
                ("tool-ledger-1",),
            ).fetchone()
        if row:
            break
        time.sleep(0.2)
    assert row is not None
    assert (row[0], row[1]) == (answer.usage.prompt_tokens, answer.usage.completion_tokens)
    price = shipped_price("gpt-4o")
    expected = row[0] * price["input_per_million_usd"] + row[1] * price["output_per_million_usd"]
    assert row[2] == pytest.approx(expected / 1e6)


def shipped_price(model_id: str) -> dict[str, float]:
    """A model's price in the shipped commercial catalog."""
    entries = yaml.safe_load(SHIPPED_CATALOG.read_text())
    return next(entry["price"] for entry in entries if entry["id"] == model_id)
