"""Shared bench fixtures: tiny workloads and a fake runner with scripted results."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from perfloop.bench.fingerprint import collect_environment
from perfloop.bench.metrics import RequestRecord
from perfloop.bench.result import BenchResult
from perfloop.bench.runner import BenchSpec, build_result
from perfloop.bench.workloads import WorkloadSpec

ECHO = f"{sys.executable} -m perfloop.bench.echo_server --port {{port}}"


class _FakeBackend:
    name = "fake"
    endpoint_type = "fake"
    model_id = "fake-model"

    def engine_flags(self) -> dict[str, object] | None:
        return None


def scripted_result(spec: BenchSpec, throughput: float) -> BenchResult:
    """A result whose output throughput is `throughput` (10 requests of 10 tokens)."""
    duration = 100.0 / throughput
    records = [
        RequestRecord(
            index=i,
            success=True,
            prompt_len=5,
            requested_output_len=10,
            output_len=10,
            start=0.0,
            ttft=0.01,
            itl=[0.001] * 9,
            latency=duration / 2,
        )
        for i in range(10)
    ]
    return build_result(spec, spec.workload, _FakeBackend(), records, duration, False, collect_environment())


@pytest.fixture
def scripted() -> Callable[[BenchSpec, float], BenchResult]:
    return scripted_result


@pytest.fixture
def tiny_workload() -> WorkloadSpec:
    return WorkloadSpec(kind="random", num_prompts=6, input_len=16, output_len=8, vocab_size=100)


@pytest.fixture
def echo_command() -> str:
    return ECHO


@pytest.fixture
def fake_runner() -> Callable[[dict[str, list[float]]], Callable[[BenchSpec], BenchResult]]:
    """Runner returning, per launch spec, the next throughput from a script."""

    def make(script: dict[str, list[float]]) -> Callable[[BenchSpec], BenchResult]:
        queues = {k: list(v) for k, v in script.items()}

        def runner(spec: BenchSpec) -> BenchResult:
            return scripted_result(spec, queues[spec.launch].pop(0))

        return runner

    return make
