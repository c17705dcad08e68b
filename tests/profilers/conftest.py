"""Shared profiler fixtures: one CPU trace of the bundled engine, captured once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfloop.bench.workloads import WorkloadSpec
from perfloop.engine.config import EngineConfig
from perfloop.profilers.capture import ProfileSchedule, capture_engine
from perfloop.profilers.tables import analyze

DATA = Path(__file__).parent / "data"
CUDA_TRACE = DATA / "cuda_graph_trace.json"


@pytest.fixture(scope="session")
def engine_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-qwen3 on CPU: one prefill step then decode steps, all recorded."""
    out = tmp_path_factory.mktemp("engine-capture")
    spec = WorkloadSpec(kind="random", num_prompts=2, input_len=24, output_len=4, seed=0)
    return capture_engine(
        EngineConfig(model="preset:tiny-qwen3"), spec, out, ProfileSchedule(wait=0, warmup=0, active=4)
    )


@pytest.fixture(scope="session")
def engine_tables(engine_trace: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("engine-tables")
    return out, analyze(engine_trace, out)
