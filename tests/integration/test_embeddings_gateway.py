"""`/v1/embeddings` on the deployed graph with the official SDK: the local demo embedding
model (its own batched deployment) and OpenAI's model through the proxy and the fake."""

import math

import openai
import pytest

from tests.fakes.fake_provider import FakeProvider, fake_embedding

pytestmark = pytest.mark.integration


def test_local_embeddings_through_the_sdk(oai: openai.OpenAI) -> None:
    texts = ["What is the capital of Zorbia?", "Which city is Zorbia's capital?", "2 + 2"]
    result = oai.embeddings.create(model="demo-embed", input=texts)  # base64 on the wire
    as_floats = oai.embeddings.create(model="demo-embed", input=texts, encoding_format="float")
    assert [d.index for d in result.data] == [0, 1, 2]
    for packed, plain in zip(result.data, as_floats.data, strict=True):
        assert math.isclose(sum(x * x for x in plain.embedding), 1.0, rel_tol=1e-4)
        assert packed.embedding == pytest.approx(plain.embedding, abs=1e-6)
    assert result.usage.prompt_tokens > 0 and result.model == "demo-embed"


def test_openai_embeddings_through_the_proxy(
    oai: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    fake_provider.reset()
    result = oai.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "bye"], dimensions=8
    )
    assert result.data[0].embedding == pytest.approx(fake_embedding("hello world", 8), abs=1e-6)
    assert result.usage.prompt_tokens == 3
    (sent,) = fake_provider.recorded()
    assert sent["path"] == "/v1/embeddings"
    assert sent["json"]["model"] == "text-embedding-3-small" and sent["json"]["dimensions"] == 8


def test_claude_and_empty_input_are_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="claude-haiku-4-5"):
        oai.embeddings.create(model="claude-haiku-4-5", input="hi")
    with pytest.raises(openai.BadRequestError):
        oai.embeddings.create(model="demo-embed", input=[])
