"""The precision fairness check: different weight precisions are refused unless allowed, then labelled."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfloop.bench.ab import run_ab
from perfloop.bench.compare import compare_results
from perfloop.bench.fingerprint import WeightsInfo
from perfloop.bench.precision import PrecisionMismatch, check_precisions
from perfloop.bench.result import write_result
from perfloop.bench.runner import BenchSpec
from perfloop.bench.targets import parse_target, target_weights
from perfloop.cli import app

FP32 = WeightsInfo(format="safetensors", precision="fp32")
Q4 = WeightsInfo(format="gguf", precision="q4_1")


def _write(tmp_path: Path, name: str, workload, weights: WeightsInfo, scripted) -> Path:  # noqa: ANN001
    result = scripted(BenchSpec(launch="http://x", workload=workload, label=name), 100.0)
    env = result.perfloop.environment.model_copy(update={"weights": weights})
    result.perfloop = result.perfloop.model_copy(update={"environment": env})
    path = tmp_path / f"{name}.json"
    write_result(result, path, [])
    return path


def test_mismatch_names_both_precisions_and_is_labelled_when_allowed() -> None:
    with pytest.raises(PrecisionMismatch, match=r"A serves fp32 \(safetensors\), B serves q4_1 \(gguf\)"):
        check_precisions([("A", FP32), ("B", Q4)])
    note = check_precisions([("A", FP32), ("B", Q4)], allow=True)
    assert note is not None and "fp32" in note and "q4_1" in note
    assert check_precisions([("A", FP32), ("B", FP32), ("C", None)]) is None


def test_engine_dtype_flag_sets_the_precision() -> None:
    fp32 = target_weights(parse_target("engine:--model preset:tiny-qwen3 --device cpu"))
    bf16 = target_weights(parse_target("engine:--model preset:tiny-qwen3 --device cpu --dtype bfloat16"))
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert target_weights(parse_target("http://127.0.0.1:1")) is None


def test_ab_refuses_before_any_trial(tiny_workload, fake_runner) -> None:  # noqa: ANN001
    a = "engine:--model preset:tiny-qwen3 --device cpu"
    b = "engine:--model preset:tiny-qwen3 --device cpu --dtype bfloat16"
    runner = fake_runner({a: [10.0, 10.0], b: [11.0, 11.0]})
    with pytest.raises(PrecisionMismatch, match="fp32.*bf16"):
        run_ab(a, b, tiny_workload, trials=2, runner=runner)
    ok = run_ab(a, b, tiny_workload, trials=2, runner=runner, allow_precision_mismatch=True)
    assert ok.precision_note is not None and "bf16" in ok.precision_note


def test_compare_cli_refuses_then_labels(tmp_path: Path, tiny_workload, scripted) -> None:  # noqa: ANN001
    a = _write(tmp_path, "a", tiny_workload, FP32, scripted)
    b = _write(tmp_path, "b", tiny_workload, Q4, scripted)
    refused = CliRunner().invoke(app, ["bench", "compare", str(a), str(b)])
    assert refused.exit_code == 2
    assert "fp32" in refused.output and "q4_1" in refused.output
    assert "--allow-precision-mismatch" in refused.output
    allowed = CliRunner().invoke(app, ["bench", "compare", str(a), str(b), "--allow-precision-mismatch"])
    assert allowed.exit_code == 0 and "PRECISION MISMATCH" in allowed.output
    assert compare_results([a, b], allow_precision_mismatch=True).precision_note is not None
