"""End to end on real targets: perfloop serve, the in-process engine, the HF peer, A/B, search resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from perfloop.bench.ab import run_ab
from perfloop.bench.compare import UnfairComparison, compare_results
from perfloop.bench.result import BenchResult, result_schema
from perfloop.bench.runner import BenchSpec, run_benchmark
from perfloop.bench.search import read_trials
from perfloop.bench.workloads import WorkloadSpec

pytestmark = pytest.mark.slow
SERVE = f"{sys.executable} -m perfloop.cli serve --model preset:tiny-qwen3 --port {{port}}"


def test_perfloop_serve_achieves_lengths_and_compare_refuses_other_workload(tmp_path: Path) -> None:
    wl = WorkloadSpec(kind="random", num_prompts=6, input_len=24, output_len=12, range_ratio=0.5)
    first = run_benchmark(
        BenchSpec(launch=SERVE, workload=wl, output=str(tmp_path / "a.json"), progress=False)
    )
    assert first.completed == 6 and first.perfloop.output_lengths.all_achieved
    assert first.perfloop.workload.vocab_size == 512  # read from the served model's config
    jsonschema.validate(json.loads((tmp_path / "a.json").read_text()), result_schema())
    other = wl.model_copy(update={"output_len": 6, "vocab_size": 512})
    run_benchmark(
        BenchSpec(
            launch="engine:--model preset:tiny-qwen3",
            workload=other,
            output=str(tmp_path / "b.json"),
            progress=False,
        )
    )
    with pytest.raises(UnfairComparison):
        compare_results([tmp_path / "a.json", tmp_path / "b.json"])


def test_hf_peer_on_cpu_produces_the_same_schema(tmp_path: Path) -> None:
    wl = WorkloadSpec(kind="random", num_prompts=4, input_len=16, output_len=8)
    for mode in ("generate_batch", "generate"):
        out = tmp_path / f"{mode}.json"
        result = run_benchmark(
            BenchSpec(
                launch=f"hf:preset:tiny-qwen3 --hf-mode {mode}",
                workload=wl,
                output=str(out),
                progress=False,
                torch_threads=1,
            )
        )
        assert result.completed == 4 and result.perfloop.output_lengths.all_achieved
        jsonschema.validate(json.loads(out.read_text()), result_schema())


def test_aa_of_a_server_runs_a_against_itself(echo_command: str, tmp_path: Path) -> None:
    # The verdict of an A/A pair is statistics on timings: test_bench_ab checks it on scripted values.
    wl = WorkloadSpec(kind="random", num_prompts=8, input_len=16, output_len=16, vocab_size=100)
    launch = echo_command.replace("{port}", "{port} --itl-ms 2")
    metrics = ["output_throughput", "mean_e2el_ms"]
    ab = run_ab(launch, None, wl, trials=3, aa=True, metrics=metrics, progress=False, out_dir=tmp_path)
    assert ab.aa and ab.a == ab.b == launch and sorted(ab.order) == ["A"] * 3 + ["B"] * 3
    for path in ab.result_files:
        result = BenchResult.load(path)
        assert result.completed == 8 and result.perfloop.output_lengths.all_achieved
    for m in ab.metrics.values():
        assert len(m.a_values) == len(m.b_values) == 3 and min(m.a_values + m.b_values) > 0
        assert m.ci_low <= m.ci_high


def test_ab_of_prefix_caching_off_and_on_on_shared_prefix(tmp_path: Path) -> None:
    """Each side runs with its own flags and serves every request in full; speed belongs in benchmarks.

    That the cache hits on this workload and keeps greedy outputs identical is engine behaviour:
    tests/engine/test_engine_invariance.py checks it.
    """
    wl = WorkloadSpec(
        kind="shared-prefix",
        num_groups=2,
        prompts_per_group=8,
        system_prompt_len=384,
        question_len=8,
        output_len=4,
    )
    on = "engine:--model preset:tiny-qwen3"
    ab = run_ab(
        on + " --no-enable-prefix-caching",
        on,
        wl,
        trials=2,
        metrics=["total_token_throughput", "mean_ttft_ms"],
        progress=False,
        torch_threads=1,
        out_dir=tmp_path,
    )
    assert len(ab.result_files) == len(ab.order) == 4
    for side, path in zip(ab.order, ab.result_files, strict=True):
        result = BenchResult.load(path)
        assert result.completed == 16 and result.perfloop.output_lengths.all_achieved
        flags = result.perfloop.environment.engine_flags or {}
        assert flags["enable_prefix_caching"] is (side == "B")
    for m in ab.metrics.values():
        assert len(m.a_values) == len(m.b_values) == 2 and m.ci_low <= m.ci_high


def test_search_resumes_after_a_kill(tmp_path: Path, echo_command: str) -> None:
    space = {
        "launch": echo_command,
        "workload": {"kind": "random", "num_prompts": 4, "input_len": 8, "output_len": 8, "vocab_size": 50},
        "bench": {"num_warmups": 0},
        "metric": "mean_e2el_ms",
        "knobs": {"--itl-ms": [1, 3], "--ttft-ms": [5, 10]},
        # No combination stage: which knobs beat the baseline is timing (a busy host's noise can
        # make a slower one win); resume is what is under test. Always 5 trials: baseline + 4.
        "combine_top": 0,
        "max_trials": 6,
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    out = tmp_path / "search"
    cmd = [
        sys.executable,
        "-m",
        "perfloop.cli",
        "bench",
        "search",
        "--space",
        str(path),
        "--out-dir",
        str(out),
    ]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 300  # liveness only: each trial starts a server
    while time.monotonic() < deadline and len(read_trials(results)) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_trials(results)
    assert 2 <= len(before) < 5
    stamps = {key: (out / f"trial-{key}.json").stat().st_mtime for key in before}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    after = read_trials(results)
    assert len(after) == 5 and set(before) <= set(after)
    lines = results.read_text().splitlines()
    assert len(lines) == len({json.loads(line)["key"] for line in lines if line.strip().endswith("}")})
    assert all((out / f"trial-{key}.json").stat().st_mtime == stamps[key] for key in before)
