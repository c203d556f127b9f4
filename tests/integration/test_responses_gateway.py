"""The Responses API on the deployed graph with the official SDK: the local demo model, an
OpenAI model and a Claude model (both through the fake provider), streamed and not."""

import openai
import pytest

from deployments.demo.corpus import SAMPLE_ANSWER, SAMPLE_QUESTION
from tests.fakes.fake_provider import FakeProvider

pytestmark = pytest.mark.integration


def test_the_demo_model_answers_and_continues(oai: openai.OpenAI) -> None:
    first = oai.responses.create(model="demo", input=SAMPLE_QUESTION, temperature=0)
    assert first.output_text == SAMPLE_ANSWER.strip()
    again = oai.responses.create(
        model="demo", input=SAMPLE_QUESTION, previous_response_id=first.id, temperature=0
    )
    assert again.previous_response_id == first.id
    assert oai.responses.retrieve(first.id).output_text == first.output_text


@pytest.mark.parametrize(
    ("model", "provider", "upstream"),
    [
        ("gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("claude-haiku-4-5", "anthropic", "claude-haiku-4-5-20251001"),
    ],
)
def test_commercial_models_stream_through_the_sdk_helper(
    oai: openai.OpenAI, fake_provider: FakeProvider, model: str, provider: str, upstream: str
) -> None:
    fake_provider.reset()
    with oai.responses.stream(model=model, input="hello", max_output_tokens=50) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    expected = fake_provider.reply_for(provider, upstream)  # type: ignore[arg-type]
    assert "".join(deltas) == expected == final.output_text
    assert final.status == "completed" and final.usage is not None
    oai.responses.delete(final.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(final.id)


def test_hosted_tools_are_refused(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="web_search"):
        oai.responses.create(model="demo", input="x", tools=[{"type": "web_search"}])
