"""The FastAPI app: OpenAI completions and chat completions over one AsyncEngine."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anyio
import jinja2
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from perfloop.engine.async_engine import AsyncEngine, Delta, EngineDeadError, QueueFullError
from perfloop.engine.detokenizer import IncrementalDetokenizer
from perfloop.engine.errors import EngineInputError
from perfloop.engine.sampler import Logprob
from perfloop.engine.sampling_params import SamplingParams
from perfloop.engine.server import metrics
from perfloop.engine.server.errors import OpenAIError, error_response, error_type, install_error_handlers
from perfloop.engine.server.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatLogprobs,
    ChatMessage,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    DeltaMessage,
    DetokenizeRequest,
    DetokenizeResponse,
    ErrorDetail,
    ErrorResponse,
    ModelCard,
    ModelList,
    ProfileStatus,
    SamplingFields,
    TokenizeRequest,
    TokenizeResponse,
    TokenLogprob,
    TopLogprob,
    Usage,
    VersionResponse,
)
from perfloop.engine.tokenizer import Tokenizer

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
    app.add_middleware(_ArrivalStamp)
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
        """The one served model, vLLM-shaped: `root` is the model directory (tokenizer files)."""
        card = ModelCard(
            id=settings.served_model_name,
            root=str(engine.engine.model_dir),
            max_model_len=engine.engine.max_model_len,
        )
        return ModelList(data=[card])

    @app.get("/version")
    async def server_version() -> VersionResponse:
        """The perfloop version serving."""
        return VersionResponse(version=_version())

    @app.post("/tokenize", dependencies=[auth], responses=_ERRORS)
    async def tokenize(body: TokenizeRequest) -> TokenizeResponse:
        """Token ids of a prompt, or of messages rendered with the chat template (vLLM's shape)."""
        return handler.tokenize(body)

    @app.post("/detokenize", dependencies=[auth], responses=_ERRORS)
    async def detokenize(body: DetokenizeRequest) -> DetokenizeResponse:
        """Text of token ids (vLLM's shape)."""
        return handler.detokenize(body)

    @app.post("/v1/completions", dependencies=[auth], response_model=CompletionResponse, responses=_ERRORS)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        """Complete a prompt (text or token ids) or a list of them; SSE when `stream` is true."""
        return await handler.completion(body, request.state.arrival)

    @app.post(
        "/v1/chat/completions", dependencies=[auth], response_model=ChatCompletionResponse, responses=_ERRORS
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        """Answer a conversation rendered through the model's chat template; SSE when `stream` is true."""
        return await handler.chat(body, request.state.arrival)

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


class _ArrivalStamp:
    """Stamps `request.state.arrival` (perf_counter) as the request comes in, before its body is
    parsed: server-side TTFT then covers what a client's does, HTTP handling included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["arrival"] = time.perf_counter()
        await self.app(scope, receive, send)


def _version() -> str:
    try:
        return version("perfloop")
    except PackageNotFoundError:
        return "unknown"


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


# Request fields that go to SamplingParams unchanged, under the same name.
_SAME_NAMED = {
    "min_p", "ignore_eos", "min_tokens", "presence_penalty", "frequency_penalty", "repetition_penalty",
    "allowed_token_ids",
}  # fmt: skip


@dataclass
class _Choice:
    """One engine request behind one choice (prompt i, sample j of n)."""

    request_id: str
    index: int
    first_of_prompt: bool
    prompt_ids: list[int]
    prompt_text: str
    deltas: AsyncIterator[Delta]


@dataclass
class _Result:
    """A finished choice, collected for a non-streamed response."""

    text: str = ""
    finish_reason: str = "abort"
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[Logprob] = field(default_factory=list)
    prompt_logprobs: list[Logprob | None] | None = None


class _Handler:
    """Turns validated requests into engine requests and engine deltas into OpenAI bodies."""

    def __init__(self, engine: AsyncEngine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings

    @property
    def tokenizer(self) -> Tokenizer:
        return self.engine.engine.tokenizer

    async def completion(self, body: CompletionRequest, arrival: float) -> Any:
        self._check_common(body)
        if body.max_tokens == 0 and not body.echo:
            raise OpenAIError(400, "max_tokens: 0 is only allowed with echo=true", param="max_tokens")
        if body.echo and body.stream:
            raise OpenAIError(400, "echo: not supported together with stream", param="echo")
        request_id = f"cmpl-{uuid.uuid4().hex}"
        # max_tokens=0 (lm-eval's loglikelihood): compute one token for the prompt logprobs, return none.
        requested = 1 if body.max_tokens == 0 else body.max_tokens
        prompt_logprobs = body.logprobs if body.echo else None
        choices = await self._start(
            request_id,
            body,
            body.prompts(),
            requested,
            "max_tokens",
            (body.logprobs, prompt_logprobs),
            arrival,
        )
        if body.stream:
            return AbortingStream(self._completion_chunks(request_id, body, choices), self._aborter(choices))
        results = await self._collect_all(choices)
        out = [self._completion_choice(body, c, r) for c, r in zip(choices, results, strict=True)]
        completion = 0 if body.max_tokens == 0 else sum(len(r.token_ids) for r in results)
        return CompletionResponse(
            id=request_id,
            model=self.settings.served_model_name,
            choices=out,
            usage=_usage(choices, completion),
        )

    async def chat(self, body: ChatCompletionRequest, arrival: float) -> Any:
        self._check_common(body)
        if body.top_logprobs is not None and not body.logprobs:
            raise OpenAIError(400, "top_logprobs: needs logprobs=true", param="top_logprobs")
        prompt = self._render(body.messages, body.add_generation_prompt, body.chat_template_kwargs)
        requested = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
        top = (body.top_logprobs or 0) if body.logprobs else None
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        choices = await self._start(request_id, body, [prompt], requested, param, (top, None), arrival)
        if body.stream:
            return AbortingStream(self._chat_chunks(request_id, body, choices), self._aborter(choices))
        results = await self._collect_all(choices)
        out = [
            ChatChoice(
                index=c.index,
                message=AssistantMessage(content=r.text),
                logprobs=self._chat_logprobs(r.logprobs) if body.logprobs else None,
                finish_reason=r.finish_reason,
            )
            for c, r in zip(choices, results, strict=True)
        ]
        usage = _usage(choices, sum(len(r.token_ids) for r in results))
        return ChatCompletionResponse(
            id=request_id, model=self.settings.served_model_name, choices=out, usage=usage
        )

    def tokenize(self, body: TokenizeRequest) -> TokenizeResponse:
        """vLLM's /tokenize: a prompt, or messages through the chat template."""
        self._check_model(body.model)
        if (body.prompt is None) == (body.messages is None):
            raise OpenAIError(400, "prompt: give exactly one of prompt or messages", param="prompt")
        text = body.prompt
        if body.messages is not None:
            text = self._render(body.messages, body.add_generation_prompt, body.chat_template_kwargs)
        tokens = self.tokenizer.encode(text or "")
        return TokenizeResponse(
            count=len(tokens), max_model_len=self.engine.engine.max_model_len, tokens=tokens
        )

    def detokenize(self, body: DetokenizeRequest) -> DetokenizeResponse:
        """vLLM's /detokenize."""
        self._check_model(body.model)
        vocab = self.engine.engine.model_config.vocab_size
        bad = next((t for t in body.tokens if t >= vocab), None)
        if bad is not None:
            raise OpenAIError(400, f"tokens: id {bad} is outside the vocabulary [0, {vocab})", param="tokens")
        return DetokenizeResponse(prompt=self.tokenizer.decode(body.tokens))

    # ---- checks ----------------------------------------------------------------------------

    def _check_model(self, model: str | None) -> None:
        served = self.settings.served_model_name
        if model is not None and model != served:
            raise OpenAIError(
                404,
                f"model: '{model}' does not exist; this server serves '{served}'",
                param="model",
                code="model_not_found",
            )

    def _check_common(self, body: SamplingFields) -> None:
        self._check_model(body.model)
        if body.stream_options is not None and not body.stream:
            raise OpenAIError(400, "stream_options: only allowed when stream is true", param="stream_options")

    def _render(
        self, messages: list[ChatMessage], add_generation_prompt: bool, kwargs: dict[str, Any] | None
    ) -> str:
        plain = [{"role": m.role, "content": m.text()} for m in messages]
        try:
            return self.tokenizer.apply_chat_template(plain, add_generation_prompt, **(kwargs or {}))
        except (ValueError, TypeError, jinja2.TemplateError) as exc:
            param = "chat_template_kwargs" if kwargs else "messages"
            raise OpenAIError(400, f"{param}: {exc}", param=param) from exc

    def _count(self, prompt: str | list[int]) -> int:
        return len(prompt) if isinstance(prompt, list) else len(self.tokenizer.encode(prompt))

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

    def _params(
        self,
        body: SamplingFields,
        max_tokens: int,
        sample: int,
        logprobs: int | None,
        prompt_logprobs: int | None,
    ) -> SamplingParams:
        bias = {int(k): v for k, v in (body.logit_bias or {}).items()}
        return SamplingParams(
            max_tokens=max_tokens,
            # Below 1e-5 logits/temperature overflows; such a temperature is greedy anyway (as in vLLM).
            temperature=0.0 if body.temperature < 1e-5 else body.temperature,
            top_p=body.top_p,
            # A nucleus this small keeps only the top token; saying so avoids float32 underflow of top_p.
            top_k=1 if body.top_p < 1e-6 else max(body.top_k, 0),
            # Sample j of n draws from its own stream, as vLLM's child requests do.
            seed=None if body.seed is None else (body.seed + sample) % 2**63,
            stop_token_ids=list(body.stop_token_ids or []),
            logit_bias=bias,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
            **body.model_dump(include=_SAME_NAMED),
        )

    # ---- engine ----------------------------------------------------------------------------

    async def _start(
        self,
        request_id: str,
        body: SamplingFields,
        prompts: list[str | list[int]],
        requested: int | None,
        param: str,
        logprobs: tuple[int | None, int | None],
        arrival: float,
    ) -> list[_Choice]:
        """Add n engine requests per prompt; siblings name the first as parent to share its blocks.

        `logprobs`: top alternatives per output token and per prompt token (None: not asked).
        """
        choices: list[_Choice] = []
        try:
            for i, prompt in enumerate(prompts):
                max_tokens = self._max_tokens(requested, self._count(prompt), param)
                parent: str | None = None
                for j in range(body.n):
                    rid = f"{request_id}-{i}-{j}"
                    params = self._params(body, max_tokens, j, *logprobs)
                    ids = await self._add(rid, prompt, params, parent, arrival)
                    text = prompt if isinstance(prompt, str) else self.tokenizer.decode(ids)
                    deltas = self._deltas(rid, body)
                    choices.append(_Choice(rid, i * body.n + j, parent is None, ids, text, deltas))
                    parent = parent or rid
        except BaseException:
            for choice in choices:
                self.engine.abort(choice.request_id)
            raise
        return choices

    def _aborter(self, choices: list[_Choice]) -> Callable[[], None]:
        def abort() -> None:
            for choice in choices:
                self.engine.abort(choice.request_id)

        return abort

    async def _add(
        self,
        request_id: str,
        prompt: str | list[int],
        params: SamplingParams,
        parent: str | None,
        arrival: float,
    ) -> list[int]:
        try:
            return await self.engine.add(request_id, prompt, params, parent, arrival)
        except EngineInputError as exc:
            raise OpenAIError(400, f"{exc.param}: {exc}", param=exc.param) from exc
        except QueueFullError as exc:
            raise OpenAIError(429, str(exc), code="queue_full", headers={"Retry-After": "1"}) from exc
        except EngineDeadError as exc:
            raise OpenAIError(503, str(exc)) from exc

    def _deltas(self, request_id: str, body: SamplingFields) -> AsyncIterator[Delta]:
        detokenizer = IncrementalDetokenizer(self.tokenizer, body.stop)  # type: ignore[arg-type]
        return self.engine.stream(request_id, detokenizer, self.tokenizer.eos_token_id)

    async def _collect_all(self, choices: list[_Choice]) -> list[_Result]:
        try:
            return list(await asyncio.gather(*(self._collect(c) for c in choices)))
        except EngineDeadError as exc:
            raise OpenAIError(503, str(exc)) from exc
        finally:
            for choice in choices:
                self.engine.abort(choice.request_id)

    async def _collect(self, choice: _Choice) -> _Result:
        result = _Result()
        parts: list[str] = []
        try:
            async for delta in choice.deltas:
                parts.append(delta.text)
                result.token_ids += delta.token_ids
                result.logprobs += delta.logprobs or []
                result.prompt_logprobs = delta.prompt_logprobs or result.prompt_logprobs
                result.finish_reason = delta.finish_reason or result.finish_reason
        finally:
            await choice.deltas.aclose()  # type: ignore[attr-defined]
        self.engine.record_finish(result.finish_reason)
        result.text = "".join(parts)
        return result

    # ---- logprobs --------------------------------------------------------------------------

    def _completion_choice(
        self, body: CompletionRequest, choice: _Choice, result: _Result
    ) -> CompletionChoice:
        text, records = result.text, list(result.logprobs)
        if body.max_tokens == 0:
            text, records = "", []
        offset = 0
        if body.echo:
            text = choice.prompt_text + text
            prompt_records = result.prompt_logprobs or [None] * len(choice.prompt_ids)
            records = [*prompt_records, *records]
        logprobs = None
        if body.logprobs is not None:
            ids = [*(choice.prompt_ids if body.echo else []), *result.token_ids][: len(records)]
            logprobs = self._completion_logprobs(ids, records, offset, body.return_tokens_as_token_ids)
        reason = "length" if body.max_tokens == 0 else result.finish_reason
        return CompletionChoice(index=choice.index, text=text, logprobs=logprobs, finish_reason=reason)

    def _completion_logprobs(
        self, ids: list[int], records: list[Logprob | None], offset: int, as_ids: bool = False
    ) -> CompletionLogprobs:
        """Legacy logprobs; `as_ids` names tokens `token_id:ID` (exact, where text would be ambiguous)."""
        out = CompletionLogprobs()
        name_of = (lambda t: f"token_id:{t}") if as_ids else self.tokenizer.token_str
        for token, record in zip(ids, records, strict=True):
            out.tokens.append(name_of(token))
            out.text_offset.append(offset)
            offset += len(self.tokenizer.decode([token]))
            if record is None:
                out.token_logprobs.append(None)
                out.top_logprobs.append(None)
                continue
            out.token_logprobs.append(_finite(record.logprob))
            out.top_logprobs.append({name_of(t): _finite(lp) for t, lp in record.top})
        return out

    def _chat_logprobs(self, records: list[Logprob]) -> ChatLogprobs:
        def top(token: int, logprob: float) -> TopLogprob:
            name = self.tokenizer.token_str(token)
            return TopLogprob(token=name, logprob=_finite(logprob), bytes=list(name.encode()))

        content = [
            TokenLogprob(
                **top(r.token_id, r.logprob).model_dump(), top_logprobs=[top(t, lp) for t, lp in r.top]
            )
            for r in records
        ]
        return ChatLogprobs(content=content)

    # ---- streaming: one chunk per generated token ------------------------------------------

    async def _completion_chunks(
        self, request_id: str, body: CompletionRequest, choices: list[_Choice]
    ) -> AsyncIterator[str]:
        model = self.settings.served_model_name
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        offsets = [0] * len(choices)
        count = 0
        try:
            async for k, delta in _merged([c.deltas for c in choices]):
                count += delta.num_new_tokens
                logprobs = None
                if body.logprobs is not None:
                    logprobs = self._completion_logprobs(
                        delta.token_ids,
                        list(delta.logprobs or []),
                        offsets[k],
                        body.return_tokens_as_token_ids,
                    )
                offsets[k] += len(delta.text)
                choice = CompletionChoice(
                    index=choices[k].index,
                    text=delta.text,
                    logprobs=logprobs,
                    finish_reason=delta.finish_reason,
                )
                yield _sse(CompletionResponse(id=request_id, model=model, choices=[choice]), include_usage)
                if delta.finish_reason is not None:
                    self.engine.record_finish(delta.finish_reason)
        except Exception as exc:  # noqa: BLE001 - the client must learn the stream failed
            yield _error_event(exc)
            return
        if include_usage:
            usage = CompletionResponse(id=request_id, model=model, choices=[], usage=_usage(choices, count))
            yield _sse(usage, True)
        yield "data: [DONE]\n\n"

    async def _chat_chunks(
        self, request_id: str, body: ChatCompletionRequest, choices: list[_Choice]
    ) -> AsyncIterator[str]:
        model = self.settings.served_model_name
        include_usage = body.stream_options is not None and body.stream_options.include_usage

        def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> str:
            return _sse(
                ChatCompletionChunk(id=request_id, model=model, choices=choices, usage=usage), include_usage
            )

        for choice in choices:
            yield chunk(
                [ChatChunkChoice(index=choice.index, delta=DeltaMessage(role="assistant", content=""))]
            )
        count = 0
        try:
            async for k, delta in _merged([c.deltas for c in choices]):
                count += delta.num_new_tokens
                logprobs = self._chat_logprobs(delta.logprobs or []) if body.logprobs else None
                part = ChatChunkChoice(
                    index=choices[k].index,
                    delta=DeltaMessage(content=delta.text),
                    logprobs=logprobs,
                    finish_reason=delta.finish_reason,
                )
                yield chunk([part])
                if delta.finish_reason is not None:
                    self.engine.record_finish(delta.finish_reason)
        except Exception as exc:  # noqa: BLE001 - the client must learn the stream failed
            yield _error_event(exc)
            return
        if include_usage:
            yield chunk([], _usage(choices, count))
        yield "data: [DONE]\n\n"


async def _merged(streams: list[AsyncIterator[Delta]]) -> AsyncIterator[tuple[int, Delta]]:
    """(stream index, delta) from several streams in arrival order; every stream is closed at the end."""
    if len(streams) == 1:  # the common case: no tasks, no extra hop per token
        try:
            async for delta in streams[0]:
                yield 0, delta
        finally:
            await streams[0].aclose()  # type: ignore[attr-defined]
        return
    queue: asyncio.Queue[tuple[int, Delta | None, BaseException | None]] = asyncio.Queue()

    async def pump(k: int, stream: AsyncIterator[Delta]) -> None:
        try:
            async for delta in stream:
                await queue.put((k, delta, None))
            await queue.put((k, None, None))
        except Exception as exc:  # noqa: BLE001 - re-raised on the consumer's side
            await queue.put((k, None, exc))
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    tasks = [asyncio.create_task(pump(k, s)) for k, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            k, delta, exc = await queue.get()
            if exc is not None:
                raise exc
            if delta is None:
                remaining -= 1
            else:
                yield k, delta
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _error_event(exc: Exception) -> str:
    """OpenAI's in-stream error: the stream ends here, without [DONE]."""
    log.error("stream ended by an error: %r", exc)
    status = 503 if isinstance(exc, EngineDeadError) else 500
    message = str(exc) if isinstance(exc, EngineDeadError) else f"internal error: {type(exc).__name__}: {exc}"
    detail = ErrorDetail(message=message, type=error_type(status), code=str(status))
    return f"data: {ErrorResponse(error=detail).model_dump_json()}\n\n"


def _finite(logprob: float) -> float:
    return max(logprob, -9999.0)  # JSON has no -inf; vLLM clamps the same way


def _usage(choices: list[_Choice], completion_tokens: int) -> Usage:
    prompt = sum(len(c.prompt_ids) for c in choices if c.first_of_prompt)  # n samples share one prompt
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion_tokens, total_tokens=prompt + completion_tokens
    )


def _sse(body: BaseModel, include_usage: bool) -> str:
    # OpenAI sends "usage": null on every chunk when usage was asked for, and leaves it out otherwise.
    data = (
        body.model_dump_json(exclude_none=False) if include_usage else body.model_dump_json(exclude={"usage"})
    )
    return f"data: {data}\n\n"
