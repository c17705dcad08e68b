"""PROFILE replays the workload at the benchmark's concurrency, and meta.json says so."""

from __future__ import annotations

import json
from pathlib import Path

from perfloop.bench.workloads import WorkloadSpec
from perfloop.engine.config import EngineConfig
from perfloop.profilers.capture import ProfileSchedule, capture_engine
from perfloop.profilers.tables import load_activities, step_events


def _batch_sizes(trace: Path) -> list[int]:
    trace_data, _ = load_activities(trace)
    return [int(ev.name.split("bs=")[1].split()[0]) for ev in step_events(trace_data) if "bs=" in ev.name]


def test_capture_admits_requests_at_the_benchmarks_concurrency(tmp_path: Path) -> None:
    config = EngineConfig(model="preset:tiny-qwen3", max_model_len=256)
    workload = WorkloadSpec(kind="random", num_prompts=6, input_len=8, output_len=6, vocab_size=500)
    sched = ProfileSchedule(wait=0, warmup=0, active=40)
    windowed = capture_engine(config, workload, tmp_path / "w2", sched, max_concurrency=2)
    free = capture_engine(config, workload, tmp_path / "all", sched)
    assert json.loads((tmp_path / "w2" / "meta.json").read_text())["max_concurrency"] == 2
    assert json.loads((tmp_path / "all" / "meta.json").read_text())["max_concurrency"] is None
    sizes = _batch_sizes(windowed)
    assert sizes and max(sizes) <= 2
    assert max(_batch_sizes(free)) > 2
