"""What a benchmark client measures is what the server did: one chunk per token, failures that fail.

1. Tokens without text still get a chunk each, and `perfloop bench`'s TTFT/ITL agree with the
   server's own per-token timings (/metrics).
2. An engine failure mid-stream (injected) ends the stream with an error event and no [DONE],
   and the bench counts those requests failed and marks the result invalid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn

from perfloop.bench.metrics import RequestRecord
from perfloop.bench.result import BenchResult, read_records
from perfloop.bench.runner import BenchSpec, run_benchmark
from perfloop.bench.workloads import WorkloadSpec
from perfloop.engine.async_engine import AsyncEngine
from perfloop.engine.config import EngineConfig
from perfloop.engine.server.app import ServerSettings, create_app

pytestmark = pytest.mark.slow

MODEL = "preset:tiny-qwen3"
SPECIAL = 300  # decodes to no text


def _events(url: str, body: dict[str, object]) -> list[str]:
    """The raw `data:` payloads of one streamed completion."""
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    return [line[5:].strip() for line in text.split("\n") if line.startswith("data:")]


def _bench(
    url: str, out: Path, num_prompts: int, output_len: int, concurrency: int | None = None
) -> tuple[BenchResult, list[RequestRecord]]:
    """`perfloop bench` against url; the result and its per-request records."""
    spec = BenchSpec(
        launch=url,
        model_id=MODEL,
        workload=WorkloadSpec(kind="random", num_prompts=num_prompts, input_len=16, output_len=output_len),
        num_warmups=0,
        max_concurrency=concurrency,
        progress=False,
        output=str(out),
    )
    return run_benchmark(spec), read_records(out)


def test_one_chunk_per_token_even_without_text(server) -> None:
    body = {
        "model": MODEL,
        "prompt": "hello",
        "max_tokens": 20,
        "logit_bias": {str(SPECIAL): 100},
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = _events(server.url, body)
    assert events[-1] == "[DONE]"
    messages = [json.loads(e) for e in events[:-1]]
    chunks = [m for m in messages if m["choices"]]
    assert len(chunks) == 20 and all(c["choices"][0]["text"] == "" for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 19 + ["length"]
    assert messages[-1]["usage"]["completion_tokens"] == 20 and not messages[-1]["choices"]


def test_bench_timings_equal_server_per_token_timings(server, tmp_path: Path) -> None:
    before = server.metrics()
    result, records = _bench(server.url, tmp_path / "r.json", num_prompts=4, output_len=24, concurrency=1)
    after = server.metrics()
    assert result.completed == 4 and result.perfloop.valid

    def delta(name: str) -> float:
        return after[name] - before[name]

    # One chunk per token: the client sees exactly the ITL gaps the server timed.
    assert all(len(r.itl) == r.output_len - 1 == 23 for r in records)
    assert delta("perfloop:time_to_first_token_seconds_count") == 4
    assert delta("perfloop:inter_token_latency_seconds_count") == sum(len(r.itl) for r in records)
    server_ttft_ms = 1000 * delta("perfloop:time_to_first_token_seconds_sum") / 4
    server_itl_ms = 1000 * delta("perfloop:inter_token_latency_seconds_sum") / (4 * 23)
    # Causal bounds, true however busy the host: the client's window holds the server's (HTTP arrival
    # to first token), and its ITL sum differs from the server's only by the transit of the first and
    # last chunk; the first chunk's transit is at most the client's TTFT excess. The upper bounds
    # allow a transit of the order seen on the first chunk plus a second (a hang or a wrong clock
    # origin is far more, a busy host's scheduling delay is not).
    excess_ms = result.mean_ttft_ms - server_ttft_ms
    assert excess_ms >= -1 and result.mean_ttft_ms <= server_ttft_ms + 1000
    gaps_ms = 23 * (result.mean_itl_ms - server_itl_ms)  # client minus server ITL sum, per request
    assert -excess_ms - 1 <= gaps_ms <= 2 * excess_ms + 0.25 * 23 * server_itl_ms + 1000


# ---- an engine that fails mid-stream -------------------------------------------------------------


@pytest.fixture
def failing_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_port: Callable[[], int], poll: Callable[..., bool]
) -> Iterator[Callable[[int], str]]:
    """An in-process server whose engine step raises after `after` steps (set once it is up)."""
    engine = AsyncEngine(EngineConfig(model=MODEL, max_model_len=256), profile_dir=tmp_path)
    app = create_app(engine, ServerSettings(served_model_name=MODEL, profile_dir=tmp_path))
    port = new_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def arm(after: int) -> str:
        assert poll(healthy, timeout=120), "in-process server did not start"
        real, calls = engine.engine.step, iter(range(10**9))

        def step() -> object:
            if next(calls) >= after:
                raise RuntimeError("injected engine failure")
            return real()

        monkeypatch.setattr(engine.engine, "step", step)
        return url

    yield arm
    server.should_exit = True
    thread.join(timeout=30)


def test_engine_failure_mid_stream_sends_error_event(failing_server) -> None:
    url = failing_server(5)
    body = {"model": MODEL, "prompt": "hello", "max_tokens": 50, "ignore_eos": True, "stream": True}
    events = _events(url, body)
    assert "[DONE]" not in events
    messages = [json.loads(e) for e in events]
    assert messages[0]["choices"], "tokens before the failure were streamed"
    error = messages[-1]["error"]
    assert error["code"] == "503" and "engine" in error["message"]
    assert all(m["choices"][0]["finish_reason"] is None for m in messages[:-1])


def test_openai_client_raises_on_the_error_event(failing_server) -> None:
    url = failing_server(5)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    stream = client.completions.create(model=MODEL, prompt="hi", max_tokens=50, stream=True)
    with pytest.raises(openai.APIError, match="engine"):
        for _ in stream:
            time.sleep(0)


def test_bench_counts_requests_cut_by_engine_failure_as_failed(failing_server, tmp_path: Path) -> None:
    url = failing_server(8)
    result, records = _bench(url, tmp_path / "r.json", num_prompts=3, output_len=40)
    assert result.completed == 0 and result.failed == 3
    assert not result.perfloop.valid
    assert all(r.error and r.error.startswith("stream error") for r in records)
    with pytest.raises(ValueError, match="invalid result"):
        result.check_valid()


# ---- bench run fails loudly -------------------------------------------------------------------------


def _bench_cli(url: str, model: str, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "perfloop.cli", "bench", "run", "--backend", "openai", "--url", url]
    cmd += ["--model", model, "--num-prompts", "3", "--random-input-len", "8", "--random-output-len", "4"]
    cmd += ["--vocab-size", "256", "--num-warmups", "0", "--no-progress", "--output", str(out)]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "300"}
    )


@pytest.mark.parametrize(
    ("case", "words"),
    [("dead-url", "3 x ConnectError"), ("wrong-model", "3 x HTTP 404")],
)
def test_bench_run_exits_nonzero_with_the_reason(
    server, tmp_path: Path, new_port: Callable[[], int], case: str, words: str
) -> None:
    url = f"http://127.0.0.1:{new_port()}" if case == "dead-url" else server.url
    model = "preset:no-such-model" if case == "wrong-model" else MODEL
    done = _bench_cli(url, model, tmp_path / "r.json")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "3 of 3 requests failed" in done.stdout and words in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    saved = BenchResult.load(tmp_path / "r.json")
    assert not saved.perfloop.valid and saved.perfloop.failures[0].startswith(words)
