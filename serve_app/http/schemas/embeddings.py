"""Wire schema of `POST /v1/embeddings` (OpenAI's shape, strict like the other routes)."""

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from serve_app.http.schemas.openai import OpenAIWireModel

TokenArray = list[int]


class EmbeddingRequest(OpenAIWireModel):
    model: str = Field(min_length=1, max_length=256, description="An embedding model.")
    input: str | list[str] | TokenArray | list[TokenArray] = Field(
        description="A string, a list of strings, a token array or a list of token arrays; "
        "each item counts toward `ingress.max_batch_items`."
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`base64`: little-endian float32 bytes, as OpenAI."
    )
    dimensions: int | None = Field(
        None, ge=1, description="Shorter vectors, for models that support it."
    )
    user: str | None = Field(None, description="End-user id; accepted, not sent upstream.")

    @field_validator("input", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if value == "" or value == []:
            raise ValueError("input must not be empty")
        if isinstance(value, list) and any(item == "" or item == [] for item in value):
            raise ValueError("input must not hold an empty string or token array")
        if isinstance(value, list) and any(isinstance(i, int) and i < 0 for i in value):
            raise ValueError("token ids must not be negative")
        return value

    @field_validator("encoding_format", mode="before")
    @classmethod
    def _null_format(cls, value: Any) -> Any:
        return "float" if value is None else value

    def inputs(self) -> tuple[str | tuple[int, ...], ...]:
        """One item per input: a string, or a token-id tuple."""
        value: Any = self.input
        if isinstance(value, str):
            return (value,)
        if all(isinstance(item, int) for item in value):
            return (tuple(value),)
        return tuple(item if isinstance(item, str) else tuple(item) for item in value)


class EmbeddingData(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 float32 bytes.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"]
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
