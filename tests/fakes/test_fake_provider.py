"""The fake provider, driven by the official `openai` and `anthropic` SDKs over loopback HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from .fake_provider import FakeProvider, generate

REPO_ROOT = Path(__file__).resolve().parents[2]
USER: Any = [{"role": "user", "content": "Say hello to the gateway tests"}]
GPT = "fake-gpt"
CLAUDE = "fake-claude"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _clean(fake: FakeProvider) -> None:
    fake.reset()
    fake.set_valid_keys(None)
    fake.set_reply_text(None)


def openai_client(
    fake: FakeProvider, *, key: str = "k", retries: int = 0, timeout: float = 5
) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=fake.openai_base_url, api_key=key, max_retries=retries, timeout=timeout
    )


@pytest.fixture
def oai(fake: FakeProvider) -> Iterator[openai.OpenAI]:
    with openai_client(fake) as client:
        yield client


@pytest.fixture
def claude(fake: FakeProvider) -> Iterator[anthropic.Anthropic]:
    base_url = fake.anthropic_base_url
    with anthropic.Anthropic(base_url=base_url, api_key="k", max_retries=0, timeout=5) as client:
        yield client


# -- token rule -------------------------------------------------------------------------------


def test_token_rule_and_cuts() -> None:
    assert FakeProvider.count_tokens("  one two\tthree\n") == 3
    body = {"system": "be brief", "messages": [{"role": "user", "content": [{"text": "a b c"}]}]}
    assert FakeProvider.count_input_tokens(body) == 5
    cut = generate("alpha beta gamma delta", {**body, "max_tokens": 2})
    assert (cut.text, cut.finish, cut.output_tokens, cut.input_tokens) == (
        "alpha beta",
        "length",
        2,
        5,
    )
    stopped = generate("alpha beta gamma delta", {"stop": ["delta", "gamma"], "max_tokens": 9})
    assert (stopped.text, stopped.finish, stopped.stop_sequence) == (
        "alpha beta ",
        "stop_sequence",
        "gamma",
    )


# -- OpenAI ---------------------------------------------------------------------------------


def test_chat_completion(fake: FakeProvider, oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model=GPT, messages=USER)
    expected = fake.reply_for("openai", GPT)
    assert reply.object == "chat.completion" and reply.model == GPT
    assert reply.choices[0].message.content == expected == "Hello from fake openai model fake-gpt."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == FakeProvider.count_input_tokens({"messages": USER}) == 6
    assert reply.usage.completion_tokens == FakeProvider.count_tokens(expected)
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    [request] = fake.recorded()
    assert request["path"] == "/v1/chat/completions" and request["api_key"] == "k"
    assert request["headers"]["authorization"] == "Bearer k"
    assert request["json"]["messages"] == USER


def test_chat_max_completion_tokens_cuts(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model=GPT, messages=USER, max_completion_tokens=2)
    assert reply.choices[0].message.content == "Hello from"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 2


def test_chat_stream(fake: FakeProvider, oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model=GPT, messages=USER, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == fake.reply_for("openai", GPT)
    assert len(chunks) == 2 + FakeProvider.count_tokens(text)  # role + one per word + final
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)


def test_chat_stream_include_usage(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model=GPT, messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (6, 6)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"


async def test_async_openai(fake: FakeProvider) -> None:
    client = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="k", max_retries=0)
    async with client:
        reply = await client.chat.completions.create(model=GPT, messages=USER)
        stream = await client.chat.completions.create(model=GPT, messages=USER, stream=True)
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]
    assert reply.choices[0].message.content == "".join(pieces) == fake.reply_for("openai", GPT)


def test_completions(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.set_reply_text("one two three four")
    reply = oai.completions.create(model=GPT, prompt="count to four", stop=["three"])
    assert reply.object == "text_completion"
    assert reply.choices[0].text == "one two " and reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 2)
    streamed = oai.completions.create(model=GPT, prompt="count", stream=True, max_tokens=3)
    chunks = list(streamed)
    assert "".join(chunk.choices[0].text for chunk in chunks) == "one two three"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_models_list_both_sdks(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    openai_models = list(oai.models.list())
    assert [model.id for model in openai_models] == [GPT, CLAUDE]
    assert openai_models[0].object == "model" and openai_models[0].owned_by
    anthropic_models = list(claude.models.list())
    assert [model.id for model in anthropic_models] == [GPT, CLAUDE]
    assert anthropic_models[0].type == "model" and anthropic_models[0].display_name


# -- Anthropic ------------------------------------------------------------------------------


def test_messages(fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model=CLAUDE, max_tokens=100, system="be nice", messages=USER)
    assert (message.type, message.role, message.model) == ("message", "assistant", CLAUDE)
    assert message.content[0].type == "text"
    assert message.content[0].text == fake.reply_for("anthropic", CLAUDE)
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (8, 6)
    [request] = fake.recorded()
    # anthropic 2.x sends the key as `Authorization: Bearer`; raw clients may use `x-api-key`.
    assert request["api_key"] == "k" and request["headers"]["authorization"] == "Bearer k"
    assert "anthropic-version" in request["headers"]


def test_messages_cuts(claude: anthropic.Anthropic) -> None:
    cut = claude.messages.create(model=CLAUDE, max_tokens=2, messages=USER)
    assert cut.content[0].type == "text" and cut.content[0].text == "Hello from"
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 2
    stopped = claude.messages.create(
        model=CLAUDE, max_tokens=50, messages=USER, stop_sequences=["model"]
    )
    assert stopped.content[0].type == "text"
    assert stopped.content[0].text == "Hello from fake anthropic "
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "model")


def test_messages_stream(fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=USER) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    expected = fake.reply_for("anthropic", CLAUDE)
    assert "".join(pieces) == expected and len(pieces) == FakeProvider.count_tokens(expected)
    assert final.content[0].type == "text" and final.content[0].text == expected
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (6, 6)


def test_messages_stream_event_order(claude: anthropic.Anthropic) -> None:
    events = claude.messages.create(model=CLAUDE, max_tokens=1, messages=USER, stream=True)
    types = [event.type for event in events]  # the SDK drops `ping`
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_messages_without_max_tokens_is_400(fake: FakeProvider) -> None:
    body = {"model": CLAUDE, "messages": USER}
    answer = httpx.post(f"{fake.url}/v1/messages", json=body, headers={"x-api-key": "k"})
    assert answer.status_code == 400
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert fake.recorded()[0]["api_key"] == "k"  # taken from `x-api-key`


# -- scripted failures ----------------------------------------------------------------------


def test_scripted_429_with_retry_after(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.script(429, 1, retry_after=2)
    with pytest.raises(openai.RateLimitError) as caught:
        oai.chat.completions.create(model=GPT, messages=USER)
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"
    assert oai.chat.completions.create(model=GPT, messages=USER).choices  # script used up


def test_scripted_429_is_retried_by_sdk(fake: FakeProvider) -> None:
    fake.script(429, 1, retry_after=0.05)
    with openai_client(fake, retries=1) as client:
        assert client.chat.completions.create(model=GPT, messages=USER).choices
    assert fake.stats() == {"/v1/chat/completions": 2}


def test_scripted_errors_in_provider_formats(
    fake: FakeProvider, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    fake.script(429, 1, error_code="insufficient_quota")
    with pytest.raises(openai.RateLimitError) as quota:
        oai.chat.completions.create(model=GPT, messages=USER)
    assert (quota.value.code, quota.value.type) == ("insufficient_quota", "insufficient_quota")
    fake.script(529, 1)
    fake.script(500, 1)
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        claude.messages.create(model=CLAUDE, max_tokens=5, messages=USER)
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError) as server:
        claude.messages.create(model=CLAUDE, max_tokens=5, messages=USER)
    assert server.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_unknown_key_is_401(
    fake: FakeProvider, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    fake.set_valid_keys({"good"})
    with pytest.raises(openai.AuthenticationError) as openai_error:
        oai.chat.completions.create(model=GPT, messages=USER)
    assert openai_error.value.code == "invalid_api_key"
    with pytest.raises(anthropic.AuthenticationError) as anthropic_error:
        claude.messages.create(model=CLAUDE, max_tokens=5, messages=USER)
    assert anthropic_error.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with openai_client(fake, key="good") as good:
        assert good.chat.completions.create(model=GPT, messages=USER).choices


def test_delay_times_out(fake: FakeProvider) -> None:
    fake.set_delay(1.0)
    with openai_client(fake, timeout=0.2) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=GPT, messages=USER)


def test_malformed_json(
    fake: FakeProvider, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    # Both SDKs let the decoder's error through: json.JSONDecodeError, not an SDK APIError.
    fake.set_malformed(3)
    with pytest.raises(json.JSONDecodeError):
        oai.chat.completions.create(model=GPT, messages=USER)
    with pytest.raises(json.JSONDecodeError):
        claude.messages.create(model=CLAUDE, max_tokens=5, messages=USER)
    with pytest.raises(json.JSONDecodeError):
        list(oai.chat.completions.create(model=GPT, messages=USER, stream=True))
    assert oai.chat.completions.create(model=GPT, messages=USER).choices


def test_drop_mid_stream(
    fake: FakeProvider, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    fake.set_drop_mid_stream(2)
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(model=GPT, messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Hello"
    # The anthropic SDK lets httpx2's transport error through unwrapped.
    texts: list[str] = []
    with (
        pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)),
        claude.messages.stream(model=CLAUDE, max_tokens=100, messages=USER) as stream,
    ):
        texts.extend(stream.text_stream)
    assert texts == ["Hello"]
    assert oai.chat.completions.create(model=GPT, messages=USER, stream=True)  # drops used up


def test_reset_and_stats(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.script(500, 5)
    fake.set_malformed(5)
    fake.set_delay(5)
    list(oai.models.list())
    assert fake.stats() == {"/v1/models": 1}
    fake.reset()
    assert fake.stats() == {} and fake.recorded() == []
    assert oai.chat.completions.create(model=GPT, messages=USER).choices


def test_standalone_process() -> None:
    with socket.socket() as sock:  # a free port, released for the child to bind
        sock.bind(("127.0.0.1", 0))
        free = int(sock.getsockname()[1])
    command = [sys.executable, "-m", "tests.fakes.fake_provider", "--port", str(free)]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            assert f"127.0.0.1:{free}" in child.stdout.readline()
            answer = httpx.get(f"http://127.0.0.1:{free}/v1/models", timeout=5)
            assert answer.json()["data"][0]["id"] == GPT
        finally:
            child.terminate()
    assert child.returncode == 0  # SIGTERM stops it cleanly
