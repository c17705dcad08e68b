"""The real server and the official `openai` client: outputs, SSE, usage, concurrency, profiling."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from perfloop.engine.llm import LLM
from perfloop.engine.sampling_params import SamplingParams

pytestmark = pytest.mark.slow

MODEL = "preset:tiny-qwen3"
PROMPTS = ["hello world", "The quick brown fox jumps", "ümlaut ✓ and 漢字 bytes", "a"]


@pytest.fixture(scope="module")
def offline() -> Iterator[LLM]:
    """The offline engine with the server's config, as the oracle (one torch thread, like the server)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield LLM(MODEL, max_model_len=256)
    torch.set_num_threads(threads)


def _greedy(offline: LLM, prompt: str | list[int], max_tokens: int) -> tuple[str, int, int, str | None]:
    out = offline.generate([prompt], SamplingParams(max_tokens=max_tokens, temperature=0.0))[0]
    return out.text, len(out.prompt_token_ids), len(out.output_token_ids), out.finish_reason


@pytest.mark.parametrize("prompt", PROMPTS)
def test_completion_equals_offline_greedy(server, offline: LLM, prompt: str) -> None:
    text, n_prompt, n_out, reason = _greedy(offline, prompt, 24)
    result = server.client().completions.create(model=MODEL, prompt=prompt, max_tokens=24, temperature=0)
    assert result.choices[0].text == text
    assert result.choices[0].finish_reason == reason
    assert result.usage.prompt_tokens == n_prompt
    assert result.usage.completion_tokens == n_out
    assert result.usage.total_tokens == n_prompt + n_out


def test_streamed_completion_equals_non_streamed(server, offline: LLM) -> None:
    prompt = PROMPTS[2]
    text, n_prompt, n_out, reason = _greedy(offline, prompt, 40)
    stream = server.client().completions.create(
        model=MODEL,
        prompt=prompt,
        max_tokens=40,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (n_prompt, n_out)
    text_chunks = chunks[:-1]
    assert all(c.usage is None for c in text_chunks)
    assert "".join(c.choices[0].text for c in text_chunks) == text
    assert [c.choices[0].finish_reason for c in text_chunks][-1] == reason
    assert len(text_chunks) == n_out, "one chunk per generated token, finish_reason on the last"


def test_stream_without_include_usage_has_no_usage(server) -> None:
    chunks = list(server.client().completions.create(model=MODEL, prompt="hi", max_tokens=5, stream=True))
    assert chunks[-1].choices[0].finish_reason in {"length", "stop"}
    assert all(c.usage is None for c in chunks)


def test_token_id_prompt(server, offline: LLM) -> None:
    ids = [104, 101, 108, 108, 111, 33]
    text, _, n_out, _ = _greedy(offline, ids, 12)
    result = server.client().completions.create(model=MODEL, prompt=ids, max_tokens=12, temperature=0)
    assert result.choices[0].text == text
    assert result.usage.prompt_tokens == len(ids)
    assert result.usage.completion_tokens == n_out


def test_chat_equals_offline_greedy_streamed_and_not(server, offline: LLM) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    prompt = offline.engine.tokenizer.apply_chat_template(messages)
    text, n_prompt, n_out, reason = _greedy(offline, prompt, 30)
    client = server.client()
    result = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=30, temperature=0)
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == text
    assert result.choices[0].finish_reason == reason
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (n_prompt, n_out)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=30,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == reason
    assert chunks[-1].usage.completion_tokens == n_out


def test_stop_string_truncates_and_reports_stop(server, offline: LLM) -> None:
    """The text ends before the first stop string, and the request ends there (streamed or not)."""
    cut_any = False
    for prompt in PROMPTS:
        full, _, _, _ = _greedy(offline, prompt, 48)
        if len(full) < 6:
            continue
        stop = full[len(full) // 2 : len(full) // 2 + 2]
        expected = full[: full.find(stop)]
        client = server.client()
        result = client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=48, temperature=0, stop=[stop]
        )
        assert result.choices[0].text == expected
        assert result.choices[0].finish_reason == "stop"
        streamed = client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=48, temperature=0, stop=stop, stream=True
        )
        chunks = list(streamed)
        assert "".join(c.choices[0].text for c in chunks) == expected
        assert chunks[-1].choices[0].finish_reason == "stop"
        cut_any = True
        break
    assert cut_any, "no prompt produced enough text to test stop strings"


def test_models_endpoint(server) -> None:
    models = server.client().models.list()
    assert [m.id for m in models.data] == [MODEL]
    card = models.data[0].model_dump()
    assert card["max_model_len"] == 256 and card["parent"] is None
    assert (Path(card["root"]) / "config.json").is_file()


def test_seeded_sampling_is_reproducible(server) -> None:
    client = server.client()
    kwargs = {"model": MODEL, "prompt": "seeded", "max_tokens": 16, "temperature": 1.0, "seed": 7}
    first = client.completions.create(**kwargs, extra_body={"ignore_eos": True, "top_k": 50})
    second = client.completions.create(**kwargs, extra_body={"ignore_eos": True, "top_k": 50})
    assert first.choices[0].text == second.choices[0].text
    assert first.usage.completion_tokens == 16


def test_64_concurrent_streams_run_batched(server) -> None:
    """Mixed lengths, all streamed at once: exact token counts, and the engine ran them together."""
    lengths = [(4 + (i * 7) % 40, 1 + (i * 13) % 30) for i in range(64)]  # (max_tokens, prompt words)

    async def one(client, max_tokens: int, words: int) -> tuple[int, int, str | None]:
        stream = await client.completions.create(
            model=MODEL,
            prompt=" ".join(["word"] * words),
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        reason, usage = None, None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].finish_reason:
                reason = chunk.choices[0].finish_reason
            usage = chunk.usage or usage
        return usage.completion_tokens, usage.prompt_tokens, reason

    async def run_all() -> list[tuple[int, int, str | None]]:
        client = server.async_client()
        return await asyncio.gather(*(one(client, m, w) for m, w in lengths))

    results = asyncio.run(run_all())
    for (max_tokens, words), (completion, prompt_tokens, reason) in zip(lengths, results, strict=True):
        assert completion == max_tokens
        assert prompt_tokens == len(" ".join(["word"] * words).encode())
        assert reason == "length"
    metrics = server.metrics()
    assert metrics["perfloop:peak_num_requests_running"] > 1
    assert metrics["perfloop:num_requests_running"] == 0
    assert metrics["perfloop:kv_cache_blocks_used"] == 0
    assert metrics["perfloop:generation_tokens_total"] >= sum(m for m, _ in lengths)
    assert metrics["perfloop:time_to_first_token_seconds_count"] >= 64
    assert metrics["perfloop:inter_token_latency_seconds_count"] > 0


def test_profile_writes_chrome_trace_with_step_annotations(server) -> None:
    started = httpx.post(f"{server.url}/start_profile", timeout=30)
    assert started.status_code == 200, started.text
    assert httpx.post(f"{server.url}/start_profile", timeout=30).status_code == 409
    server.client().completions.create(model=MODEL, prompt="profile me", max_tokens=8)
    stopped = httpx.post(f"{server.url}/stop_profile", timeout=120)
    assert stopped.status_code == 200, stopped.text
    trace = Path(stopped.json()["trace"])
    assert trace.parent == server.profile_dir.resolve() and trace.name.endswith(".json.gz")
    with gzip.open(trace, "rt") as f:
        data = json.load(f)
    names = {e.get("name", "") for e in data["traceEvents"]}
    assert any(n.startswith("perfloop.step.prefill") for n in names)
    assert any(n.startswith("perfloop.step.decode") for n in names)
    assert httpx.post(f"{server.url}/stop_profile", timeout=30).status_code == 409
