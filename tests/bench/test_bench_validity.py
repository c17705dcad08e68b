"""Failed requests make a result invalid: summarised per error kind, refused by `bench ab`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from perfloop.bench.ab import run_ab
from perfloop.bench.fingerprint import collect_environment
from perfloop.bench.metrics import RequestRecord
from perfloop.bench.result import BenchResult, failure_summary
from perfloop.bench.runner import BenchSpec, build_result
from perfloop.bench.workloads import WorkloadSpec


def _failed(index: int, error: str) -> RequestRecord:
    return RequestRecord(index=index, success=False, error=error, requested_output_len=4)


def test_failure_summary_counts_each_kind_and_keeps_its_first_error() -> None:
    records = [
        _failed(0, "HTTP 404: no such model"),
        _failed(1, "ConnectError: refused"),
        _failed(2, "HTTP 404: no such model (again)"),
        RequestRecord(index=3, success=True),
    ]
    assert failure_summary(records) == ["2 x HTTP 404: no such model", "1 x ConnectError: refused"]


def test_result_is_invalid_past_max_failed(scripted, tiny_workload: WorkloadSpec) -> None:
    ok = scripted(BenchSpec(launch="http://x", workload=tiny_workload), 100.0)
    assert ok.perfloop.valid
    ok.check_valid()
    records = [_failed(0, "stream error: engine died")]
    spec = BenchSpec(launch="http://x", workload=tiny_workload)
    backend = type("B", (), {"name": "f", "endpoint_type": "f", "model_id": "m"})()
    bad = build_result(spec, tiny_workload, backend, records, 1.0, False, collect_environment())
    assert not bad.perfloop.valid and bad.perfloop.failures == ["1 x stream error: engine died"]
    with pytest.raises(ValueError, match="stream error: engine died"):
        bad.check_valid()
    tolerant = spec.model_copy(update={"max_failed": 1})
    one_of_two = [*records, RequestRecord(index=1, success=True, output_len=4, requested_output_len=4)]
    assert build_result(
        tolerant, tiny_workload, backend, one_of_two, 1.0, False, collect_environment()
    ).perfloop.valid


def test_ab_refuses_an_invalid_trial(
    scripted: Callable[[BenchSpec, float], BenchResult], tiny_workload: WorkloadSpec
) -> None:
    def runner(spec: BenchSpec) -> BenchResult:
        result = scripted(spec, 100.0)
        if spec.launch == "http://b":
            result.perfloop.valid = False
            result.perfloop.failures = ["3 x HTTP 404: no such model"]
        return result

    with pytest.raises(ValueError, match="HTTP 404"):
        run_ab("http://a", "http://b", tiny_workload, trials=2, runner=runner)
