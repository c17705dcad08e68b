"""compare lines results up and refuses results measured on different workloads."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfloop.bench.compare import UnfairComparison, compare_results
from perfloop.bench.result import write_result
from perfloop.bench.runner import BenchSpec
from perfloop.cli import app


def _write(tmp_path: Path, name: str, workload, throughput: float, scripted) -> Path:  # noqa: ANN001
    spec = BenchSpec(launch="http://x", workload=workload, label=name)
    path = tmp_path / f"{name}.json"
    write_result(scripted(spec, throughput), path, [])
    return path


def test_ratios_against_the_first(tmp_path: Path, tiny_workload, scripted) -> None:  # noqa: ANN001
    a = _write(tmp_path, "a", tiny_workload, 100, scripted)
    b = _write(tmp_path, "b", tiny_workload, 150, scripted)
    cmp = compare_results([a, b])
    assert cmp.fair and cmp.ratios["output_throughput"] == [pytest.approx(1.0), pytest.approx(1.5)]


def test_refuses_different_workloads_unless_forced(tmp_path: Path, tiny_workload, scripted) -> None:  # noqa: ANN001
    a = _write(tmp_path, "a", tiny_workload, 100, scripted)
    b = _write(tmp_path, "b", tiny_workload.model_copy(update={"output_len": 9}), 150, scripted)
    with pytest.raises(UnfairComparison, match="fingerprints differ"):
        compare_results([a, b])
    assert compare_results([a, b], force=True).fair is False
    cli = CliRunner().invoke(app, ["bench", "compare", str(a), str(b)])
    assert cli.exit_code == 2 and "fingerprints differ" in cli.output
    forced = CliRunner().invoke(app, ["bench", "compare", str(a), str(b), "--force"])
    assert forced.exit_code == 0 and "UNFAIR" in forced.output
