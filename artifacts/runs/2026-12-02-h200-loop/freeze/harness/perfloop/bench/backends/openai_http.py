"""OpenAI-compatible HTTP backend: streaming `/v1/completions`, timed on the client like vLLM.

`st` is taken just before the POST; every SSE message carrying `choices` is a chunk
(timestamped on arrival: the first gives TTFT, later ones ITL gaps); E2E latency is the
last chunk minus `st`. Output tokens come from `usage.completion_tokens` (the request
asks for `stream_options.include_usage`), else the chunk count. A request fails on a
non-200 status, an `error` event in the stream, or a stream that ends with neither `[DONE]` nor a
`finish_reason` (some servers, e.g. `transformers serve`, close after the last chunk without `[DONE]`).

Not every server takes vLLM's `ignore_eos`: `eos_mode` says how to ask for exactly
`max_tokens` tokens (`min_tokens` for llama.cpp's server, a `generation_config` JSON
for `transformers serve`, whose strict schema rejects unknown fields). Servers that report
no token counts in streams (llama.cpp's, one token per chunk) get their prompt counted with
`count_tokens`, the model's tokenizer; their closing empty chunk is then not a token.
(Re-tokenising the output text, as vLLM's client does, miscounts: merges differ.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

import httpx
import msgspec

from perfloop.bench.backends.base import OnDone, failed_record
from perfloop.bench.metrics import RequestRecord
from perfloop.bench.workloads import BenchRequest

_decode = msgspec.json.Decoder().decode
EosMode = Literal["ignore_eos", "min_tokens", "generation_config"]


async def _sse_events(resp: httpx.Response) -> AsyncIterator[bytes]:
    """`data:` payloads of an SSE stream, split on raw bytes (cheaper than text lines)."""
    buf = b""
    async for piece in resp.aiter_raw():
        buf += piece
        *events, buf = buf.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    yield line[5:].strip()
    if buf.strip().startswith(b"data:"):
        yield buf.strip()[5:].strip()


def served_model(base_url: str, timeout: float = 30.0) -> str:
    """The first model id a server lists at /v1/models."""
    try:
        resp = httpx.get(base_url.rstrip("/") + "/v1/models", timeout=timeout)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise ValueError(f"--url: cannot list the models at {base_url}/v1/models: {exc}") from exc
    data = resp.json().get("data") or []
    if not data:
        raise ValueError(f"{base_url}/v1/models lists no model; pass the model name explicitly")
    return str(data[0]["id"])


class OpenAIBackend:
    """Streams completions from any OpenAI-compatible server."""

    name = "openai"
    endpoint_type = "openai"

    def __init__(
        self,
        base_url: str,
        model_id: str | None = None,
        temperature: float = 0.0,
        ignore_eos: bool = True,
        request_timeout: float = 6 * 3600,
        eos_mode: EosMode = "ignore_eos",
        count_tokens: Callable[[str], int] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.eos_mode = eos_mode
        self.count_tokens = count_tokens
        self.model_id = model_id or served_model(self.base_url)
        self.temperature = temperature
        self.ignore_eos = ignore_eos
        self.request_timeout = request_timeout

    def engine_flags(self) -> dict[str, object] | None:
        """A remote server's engine flags are not visible from the client."""
        return None

    def run(
        self,
        requests: Sequence[BenchRequest],
        arrivals: Sequence[float],
        max_concurrency: int | None,
        on_done: OnDone,
        t0: float,
    ) -> None:
        """Send all requests on schedule over one connection pool."""
        asyncio.run(self._run(requests, arrivals, max_concurrency, on_done, t0))

    async def _run(
        self,
        requests: Sequence[BenchRequest],
        arrivals: Sequence[float],
        max_concurrency: int | None,
        on_done: OnDone,
        t0: float,
    ) -> None:
        limit = max_concurrency or len(requests) or 1
        limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
        gate = asyncio.Semaphore(limit)
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(self.request_timeout)) as client:

            async def one(req: BenchRequest, at: float) -> None:
                delay = t0 + at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                async with gate:
                    on_done(await self._send(client, req, t0))

            await asyncio.gather(*(one(r, a) for r, a in zip(requests, arrivals, strict=True)))

    def _payload(self, req: BenchRequest) -> bytes:
        body: dict[str, Any] = {
            "model": self.model_id,
            "prompt": req.prompt,
            "max_tokens": req.output_len,
            "temperature": self.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.eos_mode == "ignore_eos":
            body["ignore_eos"] = self.ignore_eos
        elif self.eos_mode == "min_tokens":
            body["min_tokens"] = req.output_len if self.ignore_eos else 0
        elif self.ignore_eos:  # generation_config replaces the model's, eos included
            gen = {"max_new_tokens": req.output_len, "min_new_tokens": req.output_len}
            body["generation_config"] = json.dumps({**gen, "do_sample": self.temperature > 0})
        return msgspec.json.encode(body)

    def _end_marker(self, choice: dict[str, Any]) -> bool:
        """A closing chunk with no text (llama.cpp's): not a token when we count tokens ourselves."""
        return self.count_tokens is not None and not choice.get("text") and bool(choice.get("finish_reason"))

    async def _send(self, client: httpx.AsyncClient, req: BenchRequest, t0: float) -> RequestRecord:
        url = self.base_url + "/v1/completions"
        payload = self._payload(req)
        ttft = 0.0
        itl: list[float] = []
        chunks = 0
        done = False
        finished = False  # a choice carried finish_reason: the server ended the answer itself
        usage_out: int | None = None
        usage_in: int | None = None
        st = time.perf_counter()
        latest = st
        try:
            async with client.stream(
                "POST", url, content=payload, headers={"Content-Type": "application/json"}
            ) as resp:
                if resp.status_code != 200:
                    body = (await resp.aread()).decode(errors="replace")[:300]
                    return failed_record(req, st - t0, f"HTTP {resp.status_code}: {body}")
                async for data in _sse_events(resp):
                    if data == b"[DONE]":
                        done = True
                        continue
                    msg = _decode(data)
                    if usage := msg.get("usage"):  # alone, or riding on the last choices chunk
                        usage_out = usage.get("completion_tokens")
                        usage_in = usage.get("prompt_tokens")
                    if choices := msg.get("choices"):
                        finished = finished or bool(choices[0].get("finish_reason"))
                        if self._end_marker(choices[0]):
                            continue
                        now = time.perf_counter()
                        if chunks == 0:
                            ttft = now - st
                        else:
                            itl.append(now - latest)
                        latest = now
                        chunks += 1
                    elif error := msg.get("error"):
                        return failed_record(req, st - t0, f"stream error: {error}")
        except (httpx.HTTPError, msgspec.DecodeError, OSError) as exc:
            return failed_record(req, st - t0, f"{type(exc).__name__}: {exc}")
        if not done and not finished:
            return failed_record(req, st - t0, f"stream ended without [DONE] after {chunks} chunks")
        if chunks == 0:
            return failed_record(req, st - t0, "no content chunks received")
        if usage_in is None and self.count_tokens is not None and isinstance(req.prompt, str):
            usage_in = self.count_tokens(req.prompt)
        return RequestRecord(
            index=req.index,
            success=True,
            prompt_len=usage_in if req.prompt_len is None and usage_in is not None else req.prompt_len or 0,
            requested_output_len=req.output_len,
            output_len=usage_out if usage_out is not None else chunks,
            output_len_source="usage" if usage_out is not None else "chunks",
            start=st - t0,
            ttft=ttft,
            itl=itl,
            latency=latest - st,
        )
