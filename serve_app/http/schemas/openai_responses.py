"""Response models of the OpenAI-compatible API: documentation of the bodies that
`serve_app.http.formats` builds (the tests validate them against OpenAI's own OpenAPI
description as well)."""

from typing import Any, Literal

from pydantic import BaseModel, Field

# -- responses (documentation of what `serve_app.http.formats` builds) ------------------------

FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCallOut(BaseModel):
    name: str
    arguments: str = Field(description="JSON text of the arguments object.")


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None = Field(description="Null when the answer is only tool calls.")
    refusal: str | None = Field(None, description="Always present; null without a refusal.")
    tool_calls: list[ToolCallOut] | None = Field(None, description="Present only with calls.")


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: dict[str, Any] | None = Field(None, description="`{content: [...]}` if asked.")
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int = Field(description="Unix seconds.")
    model: str
    choices: list[ChatChoice]
    usage: OpenAIUsage


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = Field(None, description="Only on the first chunk.")
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = Field(
        None, description="Pieces of tool calls: index, id, type and name first, then arguments."
    )


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    logprobs: dict[str, Any] | None = None
    finish_reason: FinishReason | None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice] = Field(description="Empty in the final usage chunk.")
    usage: OpenAIUsage | None = Field(
        None,
        description="Present only with `include_usage`: null on every chunk but the last.",
    )


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: dict[str, Any] | None = None
    finish_reason: Literal["stop", "length", "content_filter"] | None = Field(
        description="Null on streamed chunks before the last."
    )


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: OpenAIUsage


class CompletionChunk(BaseModel):
    """Legacy completions stream chunks share the object name `text_completion`."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice] = Field(description="Empty in the final usage chunk.")
    usage: OpenAIUsage | None = Field(
        None,
        description="Present only with `include_usage`: null on every chunk but the last.",
    )


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"]
    data: list[OpenAIModel]


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody
