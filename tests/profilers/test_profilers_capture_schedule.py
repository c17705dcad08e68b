"""The default in-process capture records the workload's prefill, not only its decode."""

from __future__ import annotations

import json
from pathlib import Path

from perfloop.bench.workloads import WorkloadSpec
from perfloop.engine.config import EngineConfig
from perfloop.profilers.capture import ProfileSchedule, capture_engine
from perfloop.profilers.tables import load_activities, step_events


def test_default_schedule_records_prefill_then_decode(tmp_path: Path) -> None:
    # The CLI's defaults: short prompts that all prefill in the first step, --wait 1 --warmup 1.
    spec = WorkloadSpec(kind="random", num_prompts=4, input_len=64, output_len=16, seed=0)
    trace = capture_engine(EngineConfig(model="preset:tiny-qwen3"), spec, tmp_path, ProfileSchedule())
    steps = [e.name.split()[0].removeprefix("perfloop.step.") for e in step_events(load_activities(trace)[0])]
    assert steps[0] == "prefill" and "decode" in steps
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["steps_profiled"] == ProfileSchedule().active == len(steps)
