"""The FastAPI app: OpenAI completions and chat completions over one AsyncEngine."""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from perfloop.engine.async_engine import AsyncEngine, Delta, EngineDeadError, QueueFullError
from perfloop.engine.detokenizer import IncrementalDetokenizer
from perfloop.engine.errors import EngineInputError
from perfloop.engine.sampling_params import SamplingParams
from perfloop.engine.server import metrics
from perfloop.engine.server.errors import OpenAIError, error_response, install_error_handlers
from perfloop.engine.server.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    DeltaMessage,
    ErrorResponse,
    ModelCard,
    ModelList,
    ProfileStatus,
    SamplingFields,
    Usage,
)

log = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in [
        (400, "Invalid parameter (named in error.param) or prompt over the context limit."),
        (401, "Missing or wrong API key."),
        (404, "Unknown model name."),
        (429, "The waiting queue is full; retry after Retry-After seconds."),
        (503, "The engine is not running."),
    ]
}


class ServerSettings(BaseModel):
    """What the server needs besides the engine."""

    served_model_name: str
    api_key: str | None = None
    profile_dir: Path


class AbortingStream(StreamingResponse):
    """An SSE response that notices a client disconnect at once and then runs `on_close`.

    Starlette only notices a disconnect on the next write; a request still waiting in the
    queue writes nothing, so this listens for the disconnect while it streams.
    """

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._content = content
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    await self.stream_response(send)
                    group.cancel_scope.cancel()

                async def watch() -> None:
                    await self.listen_for_disconnect(receive)
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                group.start_soon(watch)
        except OSError:
            pass  # the client went away mid-write
        finally:
            with anyio.CancelScope(shield=True):
                await self._content.aclose()  # type: ignore[attr-defined]
            self._on_close()


def create_app(engine: AsyncEngine, settings: ServerSettings) -> FastAPI:
    """The app; its lifespan starts the engine thread and stops it on shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        log.info(
            "engine ready: %s (max_model_len %d)", settings.served_model_name, engine.engine.max_model_len
        )
        yield
        log.info("shutting down: aborting %d in-flight requests", engine.num_requests)
        await engine.shutdown()

    app = FastAPI(title="perfloop engine server", version="1", lifespan=lifespan)
    install_error_handlers(app)
    auth = Depends(_auth_checker(settings.api_key))
    handler = _Handler(engine, settings)

    @app.get("/health", responses=_ERRORS)
    async def health() -> JSONResponse:
        """200 while the engine thread runs."""
        if not engine.healthy:
            return error_response(503, "the engine is not running")
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_page() -> PlainTextResponse:
        """Prometheus text: running/waiting requests, KV usage, prefix cache, tokens, TTFT and ITL."""
        return PlainTextResponse(
            metrics.render(engine, settings.served_model_name), media_type=metrics.CONTENT_TYPE
        )

    @app.get("/v1/models", dependencies=[auth], responses=_ERRORS)
    async def models() -> ModelList:
        """The one served model."""
        card = ModelCard(id=settings.served_model_name, max_model_len=engine.engine.max_model_len)
        return ModelList(data=[card])

    @app.post("/v1/completions", dependencies=[auth], response_model=CompletionResponse, responses=_ERRORS)
    async def completions(body: CompletionRequest) -> Any:
        """Complete one prompt (text or token ids); SSE when `stream` is true."""
        return await handler.completion(body)

    @app.post(
        "/v1/chat/completions", dependencies=[auth], response_model=ChatCompletionResponse, responses=_ERRORS
    )
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        """Answer a conversation rendered through the model's chat template; SSE when `stream` is true."""
        return await handler.chat(body)

    @app.post("/start_profile", dependencies=[auth], responses=_ERRORS)
    async def start_profile() -> ProfileStatus:
        """Start a torch profiler around the engine loop."""
        try:
            await engine.start_profile()
        except RuntimeError as exc:
            raise OpenAIError(409, str(exc)) from exc
        return ProfileStatus(status="started", profile_dir=str(settings.profile_dir))

    @app.post("/stop_profile", dependencies=[auth], responses=_ERRORS)
    async def stop_profile() -> ProfileStatus:
        """Stop the profiler and write a Chrome trace (.json.gz) into the profile dir."""
        trace = await engine.stop_profile()
        if trace is None:
            raise OpenAIError(409, "the profiler is not running; POST /start_profile first")
        return ProfileStatus(status="stopped", profile_dir=str(settings.profile_dir), trace=str(trace))

    return app


def _auth_checker(api_key: str | None) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if not token:
            raise OpenAIError(
                401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key"
            )
        if not secrets.compare_digest(token.encode(), api_key.encode()):
            raise OpenAIError(401, "incorrect API key", code="invalid_api_key")

    return check


class _Handler:
    """Turns validated requests into engine requests and engine deltas into OpenAI bodies."""

    def __init__(self, engine: AsyncEngine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings

    async def completion(self, body: CompletionRequest) -> Any:
        self._check_common(body)
        prompt_len = len(body.prompt) if isinstance(body.prompt, list) else self._count(body.prompt)
        max_tokens = self._max_tokens(body.max_tokens, prompt_len, "max_tokens")
        request_id = f"cmpl-{uuid.uuid4().hex}"
        prompt_ids = await self._add(request_id, body.prompt, self._params(body, max_tokens))
        deltas = self._deltas(request_id, body)
        if body.stream:
            chunks = self._completion_chunks(request_id, body, prompt_ids, deltas)
            return AbortingStream(chunks, lambda: self.engine.abort(request_id))
        text, reason, count = await self._collect(request_id, deltas)
        return CompletionResponse(
            id=request_id,
            model=self.settings.served_model_name,
            choices=[CompletionChoice(text=text, finish_reason=reason)],
            usage=_usage(prompt_ids, count),
        )

    async def chat(self, body: ChatCompletionRequest) -> Any:
        self._check_common(body)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        try:
            prompt = self.engine.engine.tokenizer.apply_chat_template(messages)
        except ValueError as exc:
            raise OpenAIError(400, f"messages: {exc}", param="messages") from exc
        prompt_len = self._count(prompt)
        requested = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
        max_tokens = self._max_tokens(requested, prompt_len, param)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        prompt_ids = await self._add(request_id, prompt, self._params(body, max_tokens))
        deltas = self._deltas(request_id, body)
        if body.stream:
            chunks = self._chat_chunks(request_id, body, prompt_ids, deltas)
            return AbortingStream(chunks, lambda: self.engine.abort(request_id))
        text, reason, count = await self._collect(request_id, deltas)
        return ChatCompletionResponse(
            id=request_id,
            model=self.settings.served_model_name,
            choices=[ChatChoice(message=AssistantMessage(content=text), finish_reason=reason)],
            usage=_usage(prompt_ids, count),
        )

    # ---- checks ----------------------------------------------------------------------------

    def _check_common(self, body: SamplingFields) -> None:
        served = self.settings.served_model_name
        if body.model != served:
            raise OpenAIError(
                404,
                f"model: '{body.model}' does not exist; this server serves '{served}'",
                param="model",
                code="model_not_found",
            )
        if body.stream_options is not None and not body.stream:
            raise OpenAIError(400, "stream_options: only allowed when stream is true", param="stream_options")

    def _count(self, prompt: str) -> int:
        return len(self.engine.engine.tokenizer.encode(prompt))

    def _max_tokens(self, requested: int | None, prompt_len: int, param: str) -> int:
        limit = self.engine.engine.max_model_len
        if prompt_len >= limit:
            raise OpenAIError(
                400,
                f"prompt: {prompt_len} tokens do not fit the context limit of {limit} tokens "
                "(at least one token must be left for the output)",
                param="prompt",
                code="context_length_exceeded",
            )
        if requested is None:
            return limit - prompt_len
        if prompt_len + requested > limit:
            raise OpenAIError(
                400,
                f"{param}: {prompt_len} prompt tokens + {requested} output tokens exceed the context limit "
                f"of {limit} tokens",
                param=param,
                code="context_length_exceeded",
            )
        return requested

    def _params(self, body: SamplingFields, max_tokens: int) -> SamplingParams:
        return SamplingParams(
            max_tokens=max_tokens,
            # Below 1e-5 logits/temperature overflows; such a temperature is greedy anyway (as in vLLM).
            temperature=0.0 if body.temperature < 1e-5 else body.temperature,
            top_p=body.top_p,
            # A nucleus this small keeps only the top token; saying so avoids float32 underflow of top_p.
            top_k=1 if body.top_p < 1e-6 else max(body.top_k, 0),
            seed=body.seed,
            ignore_eos=body.ignore_eos,
        )

    # ---- engine ----------------------------------------------------------------------------

    async def _add(self, request_id: str, prompt: str | list[int], params: SamplingParams) -> list[int]:
        try:
            return await self.engine.add(request_id, prompt, params)
        except EngineInputError as exc:
            raise OpenAIError(400, f"{exc.param}: {exc}", param=exc.param) from exc
        except QueueFullError as exc:
            raise OpenAIError(429, str(exc), code="queue_full", headers={"Retry-After": "1"}) from exc
        except EngineDeadError as exc:
            raise OpenAIError(503, str(exc)) from exc

    def _deltas(self, request_id: str, body: SamplingFields) -> AsyncIterator[Delta]:
        tokenizer = self.engine.engine.tokenizer
        detokenizer = IncrementalDetokenizer(tokenizer, body.stop)  # type: ignore[arg-type]
        return self.engine.stream(request_id, detokenizer, tokenizer.eos_token_id)

    async def _collect(self, request_id: str, deltas: AsyncIterator[Delta]) -> tuple[str, str, int]:
        parts: list[str] = []
        count, reason = 0, "abort"
        try:
            async for delta in deltas:
                parts.append(delta.text)
                count += delta.num_new_tokens
                reason = delta.finish_reason or reason
        except EngineDeadError as exc:
            raise OpenAIError(503, str(exc)) from exc
        finally:
            await deltas.aclose()  # type: ignore[attr-defined]
            self.engine.abort(request_id)
        self.engine.record_finish(reason)
        return "".join(parts), reason, count

    # ---- streaming -------------------------------------------------------------------------

    async def _completion_chunks(
        self, request_id: str, body: CompletionRequest, prompt_ids: list[int], deltas: AsyncIterator[Delta]
    ) -> AsyncIterator[str]:
        model = self.settings.served_model_name
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        count = 0
        async for delta in _guard(deltas):
            count += delta.num_new_tokens
            if delta.text:
                choice = CompletionChoice(text=delta.text, finish_reason=None)
                yield _sse(CompletionResponse(id=request_id, model=model, choices=[choice]), include_usage)
            if delta.finish_reason is not None:
                self.engine.record_finish(delta.finish_reason)
                final = CompletionChoice(text="", finish_reason=delta.finish_reason)
                yield _sse(CompletionResponse(id=request_id, model=model, choices=[final]), include_usage)
        if include_usage:
            usage = CompletionResponse(
                id=request_id, model=model, choices=[], usage=_usage(prompt_ids, count)
            )
            yield _sse(usage, True)
        yield "data: [DONE]\n\n"

    async def _chat_chunks(
        self,
        request_id: str,
        body: ChatCompletionRequest,
        prompt_ids: list[int],
        deltas: AsyncIterator[Delta],
    ) -> AsyncIterator[str]:
        model = self.settings.served_model_name
        include_usage = body.stream_options is not None and body.stream_options.include_usage

        def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> str:
            return _sse(
                ChatCompletionChunk(id=request_id, model=model, choices=choices, usage=usage), include_usage
            )

        yield chunk([ChatChunkChoice(delta=DeltaMessage(role="assistant", content=""))])
        count = 0
        async for delta in _guard(deltas):
            count += delta.num_new_tokens
            if delta.text:
                yield chunk([ChatChunkChoice(delta=DeltaMessage(content=delta.text))])
            if delta.finish_reason is not None:
                self.engine.record_finish(delta.finish_reason)
                yield chunk([ChatChunkChoice(delta=DeltaMessage(), finish_reason=delta.finish_reason)])
        if include_usage:
            yield chunk([], _usage(prompt_ids, count))
        yield "data: [DONE]\n\n"


async def _guard(deltas: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    """Deltas until the request ends; an engine failure ends the stream with an error event."""
    try:
        async for delta in deltas:
            yield delta
    except EngineDeadError as exc:
        log.error("stream ended by engine failure: %s", exc)
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]


def _usage(prompt_ids: list[int], completion_tokens: int) -> Usage:
    return Usage(
        prompt_tokens=len(prompt_ids),
        completion_tokens=completion_tokens,
        total_tokens=len(prompt_ids) + completion_tokens,
    )


def _sse(body: BaseModel, include_usage: bool) -> str:
    # OpenAI sends "usage": null on every chunk when usage was asked for, and leaves it out otherwise.
    data = (
        body.model_dump_json(exclude_none=False) if include_usage else body.model_dump_json(exclude={"usage"})
    )
    return f"data: {data}\n\n"
