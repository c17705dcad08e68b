"""Real model, real peers: chat through `perfloop serve` + the openai client, and an interleaved A/B
of perfloop's engine against llama.cpp's server and `transformers serve` on the same prompts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import openai
import pytest

from perfloop.bench.ab import run_ab
from perfloop.bench.chat_prompts import write_chat_dataset
from perfloop.bench.launcher import Launcher
from perfloop.bench.result import BenchResult
from perfloop.bench.workloads import WorkloadSpec
from perfloop.engine.models import smollm2

MODEL = "preset:smollm2-135m"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not smollm2.available(), reason=f"needs the SmolLM2 weights: {smollm2.INSTALL_HINT}"),
]
SERVE = f"OMP_NUM_THREADS=1 {sys.executable} -m perfloop.cli serve --model {MODEL} --port {{port}}"


def test_chat_answers_paris_through_the_openai_client(tmp_path: Path) -> None:
    with Launcher(SERVE, health_timeout=600, log_path=tmp_path / "serve.log") as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
        model = client.models.list().data[0].id
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=24,
            temperature=0.0,
        )
    assert "Paris" in (reply.choices[0].message.content or "")


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason='llama-cpp-python is not installed: pip install "perfloop[peers]" (builds llama.cpp from source)',
)
@pytest.mark.parametrize(
    "peer",
    [
        f"peer:llamacpp --model {MODEL} --weights f32 --threads 1",
        f"peer:transformers-serve --model {MODEL} --threads 1",
    ],
)
def test_interleaved_ab_against_a_launched_peer(tmp_path: Path, peer: str) -> None:
    dataset = write_chat_dataset(MODEL, tmp_path / "chat.json", num_prompts=2, min_tokens=32, max_tokens=64)
    workload = WorkloadSpec(kind="sharegpt", dataset_path=str(dataset), num_prompts=2, output_len=8)
    result = run_ab(
        SERVE, peer, workload, trials=2, out_dir=tmp_path, max_concurrency=2, num_warmups=0, progress=False
    )
    assert result.precision_note is None  # both sides fp32
    assert result.order.count("A") == result.order.count("B") == 2
    tokens = result.metrics["output_throughput"]
    assert len(tokens.a_values) == len(tokens.b_values) == 2 and min(tokens.b_values) > 0
    for path in result.result_files:  # every trial completed every request, with 8 tokens each
        trial = BenchResult.load(path)
        assert trial.completed == 2 and trial.perfloop.output_lengths.all_achieved
        assert trial.perfloop.environment.weights.precision == "fp32"
