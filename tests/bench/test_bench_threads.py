"""The environment fingerprint records the torch threads an in-process engine really ran with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from perfloop.bench.runner import BenchSpec, run_benchmark
from perfloop.bench.workloads import WorkloadSpec
from perfloop.engine.threads import default_threads, usable_cpus

WORKLOAD = WorkloadSpec(kind="random", num_prompts=2, input_len=8, output_len=4)


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("flag", ["", " --torch-threads 1"])
def test_engine_runs_record_the_effective_thread_count(flag: str) -> None:
    expected = 1 if flag else default_threads()
    result = run_benchmark(
        BenchSpec(launch="engine:--model preset:tiny-qwen3" + flag, workload=WORKLOAD, progress=False)
    )
    env = result.perfloop.environment
    assert result.completed == 2
    assert env.torch_threads == expected
    assert env.usable_cpus == usable_cpus()
    assert env.engine_flags is not None and env.engine_flags["torch_threads"] == (1 if flag else None)
