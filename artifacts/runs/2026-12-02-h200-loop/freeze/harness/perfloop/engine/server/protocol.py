"""OpenAI request and response bodies, as pydantic models (the OpenAPI document comes from these)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)
from pydantic.json_schema import SkipJsonSchema

MAX_N = 16
MAX_LOGPROBS = 20

# ---- requests ---------------------------------------------------------------------------------


class StreamOptions(BaseModel):
    """OpenAI's `stream_options`."""

    model_config = ConfigDict(extra="forbid")

    include_usage: bool = Field(False, description="Send a last chunk carrying `usage`.")


class SamplingFields(BaseModel):
    """Fields shared by completions and chat completions.

    Unknown fields are refused (400 naming the field): nothing is accepted and then ignored.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The served model name (see GET /v1/models).")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1, description="0 or -1 = off (vLLM extension).")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="Drop tokens below min_p x the top probability.")
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: str | list[str] | None = Field(None, description="Up to 4 strings that end the text.")
    stop_token_ids: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="Token ids that end it."
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = Field(False, description="Keep generating past end-of-sequence (vLLM extension).")
    min_tokens: int = Field(0, ge=0, description="EOS and stop_token_ids are banned before this many tokens.")
    n: int = Field(1, ge=1, le=MAX_N, description="Choices per prompt; they share the prompt's KV blocks.")
    best_of: int | None = Field(None, ge=1, le=1, description="Only 1 (vLLM V1 dropped best_of).")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=2.0, description="vLLM extension; 1 = off.")
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = Field(
        None, description="Token id (as a string) -> bias added to its logit."
    )
    allowed_token_ids: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, min_length=1, description="Sample only these token ids (vLLM extension)."
    )
    response_format: dict[str, Any] | None = Field(None, description="Only {'type': 'text'}.")
    tools: list[dict[str, Any]] | None = Field(None, description="Not supported: leave unset or empty.")
    tool_choice: Literal["none"] | None = Field(None, description="Only 'none'.")
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, stop: str | list[str] | None) -> list[str]:
        items = [stop] if isinstance(stop, str) else list(stop or [])
        if len(items) > 4:
            raise ValueError("at most 4 stop strings")
        if any(s == "" for s in items):
            raise ValueError("stop strings must not be empty")
        return items

    @field_validator("logit_bias")
    @classmethod
    def _bias_keys(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        if bias and not all(key.isdigit() for key in bias):
            raise ValueError("keys must be token ids, e.g. {'300': 5.0}")
        return bias

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, fmt: dict[str, Any] | None) -> dict[str, Any] | None:
        if fmt is not None and fmt != {"type": "text"}:
            raise ValueError("only {'type': 'text'} is supported (no structured output)")
        return fmt

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if tools:
            raise ValueError("tool calling is not supported")
        return tools


PromptText = Annotated[str, Field(min_length=1)]
PromptIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class CompletionRequest(SamplingFields):
    """POST /v1/completions."""

    prompt: (
        PromptText
        | PromptIds
        | Annotated[list[PromptText], Field(min_length=1)]
        | Annotated[list[PromptIds], Field(min_length=1)]
    ) = Field(description="A prompt (text or token ids) or a list of prompts.")
    max_tokens: int | None = Field(16, ge=0, description="Tokens to generate; default 16; 0 only with echo.")
    echo: bool = Field(False, description="Prepend the prompt to the text (and its logprobs to logprobs).")
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS, description="Top alternatives per token.")
    return_tokens_as_token_ids: bool = Field(
        False, description="Name logprob tokens `token_id:ID` instead of their text (vLLM extension)."
    )
    suffix: SkipJsonSchema[None] = None

    def prompts(self) -> list[str | list[int]]:
        """The prompt(s) as a list."""
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]  # type: ignore[list-item]
        return list(self.prompt)  # type: ignore[arg-type]


class ContentPart(BaseModel):
    """One text part of a message's content."""

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One chat message."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart]
    name: str | None = None

    def text(self) -> str:
        """The content as one string."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, description="Default: the rest of the context.")
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer name for max_tokens.")
    logprobs: bool = Field(False, description="Return each output token's logprob.")
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS, description="Alternatives; needs logprobs.")
    add_generation_prompt: bool = Field(True, description="End the prompt with the assistant's turn start.")
    chat_template_kwargs: dict[str, Any] | None = Field(None, description="Extra chat-template variables.")


class TokenizeRequest(BaseModel):
    """POST /tokenize (vLLM's shape): a prompt, or messages rendered with the chat template."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_generation_prompt: bool = True
    add_special_tokens: bool = Field(False, description="Only false: prompts are encoded without BOS/EOS.")
    chat_template_kwargs: dict[str, Any] | None = None

    @field_validator("add_special_tokens")
    @classmethod
    def _no_specials(cls, add: bool) -> bool:
        if add:
            raise ValueError("only false is supported: this server encodes prompts without special tokens")
        return add


class TokenizeResponse(BaseModel):
    """Body of POST /tokenize."""

    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(BaseModel):
    """POST /detokenize."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    tokens: list[Annotated[int, Field(ge=0)]]


class DetokenizeResponse(BaseModel):
    """Body of POST /detokenize."""

    prompt: str


class VersionResponse(BaseModel):
    """Body of GET /version."""

    version: str


# ---- responses --------------------------------------------------------------------------------


def _now() -> int:
    return int(time.time())


class Usage(BaseModel):
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    """Legacy completions logprobs: one entry per token (the first prompt token has None)."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    """One choice of a completion (or one streamed chunk of it)."""

    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None


class CompletionResponse(BaseModel):
    """Body of a completion, or one SSE chunk when streaming."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(BaseModel):
    """One alternative token of a chat logprob entry."""

    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    """A chat output token's logprob and its top alternatives."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    """Chat logprobs: one entry per output token."""

    content: list[TokenLogprob] | None = None


class AssistantMessage(BaseModel):
    """The generated message."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """One choice of a chat completion."""

    index: int = 0
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None


class ChatCompletionResponse(BaseModel):
    """Body of a non-streamed chat completion."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[ChatChoice]
    usage: Usage


class DeltaMessage(BaseModel):
    """The new part of the assistant message in one chunk (unset fields are left out, as OpenAI does)."""

    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatChunkChoice(BaseModel):
    """One choice of a chat chunk."""

    index: int = 0
    delta: DeltaMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One SSE chunk of a streamed chat completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    """One entry of GET /v1/models."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=_now)
    owned_by: str = "perfloop"
    root: str = Field(description="The model directory: clients load the tokenizer from here.")
    parent: str | None = None
    max_model_len: int


class ModelList(BaseModel):
    """Body of GET /v1/models."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Body of every error response."""

    error: ErrorDetail


class ProfileStatus(BaseModel):
    """Body of /start_profile and /stop_profile."""

    status: Literal["started", "stopped"]
    profile_dir: str
    trace: str | None = None
