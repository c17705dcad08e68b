"""Production rows from real H200 traces (the profiler tests' fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from perfloop.cli import app
from perfloop.kernel.extract import extract_rows
from perfloop.ledger.kernel_records import ProductionRow

EAGER = Path(__file__).resolve().parents[1] / "profilers" / "data" / "h200_eager.json.gz"


def test_rows_are_shape_buckets_with_grid_dims_and_share() -> None:
    rows = extract_rows(EAGER, stage="decode")
    assert rows and all(r.stage == "decode" for r in rows)
    assert abs(sum(r.share_pct for r in rows) - 100.0) < 0.1  # every decode kernel falls in one bucket
    assert [r.device_us for r in rows] == sorted((r.device_us for r in rows), reverse=True)
    paged = [r for r in rows if r.kernel == "_paged_decode_kernel"]
    assert paged and paged[0].grid == [8, 8, 1] and paged[0].calls == 84
    gemm = next(r for r in rows if r.input_dims == "[[8,1024],[1024,6144]]")
    assert gemm.bucket == f"decode/{gemm.kernel}/grid=4x24x1/dims=[[8,1024],[1024,6144]]"
    assert gemm.site.startswith("perfloop/")  # the engine line that launched it


def test_kernel_filter_and_min_share() -> None:
    rows = extract_rows(EAGER, kernel="paged", min_share=1.0)
    assert rows and all("paged" in r.kernel and r.share_pct >= 1.0 for r in rows)


def test_cli_writes_rows(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    result = CliRunner().invoke(
        app, ["kernel", "extract", str(EAGER), "--stage", "decode", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = [ProductionRow.model_validate(r) for r in json.loads(out.read_text())]
    assert rows[0].bucket in result.output


def test_cli_names_a_bad_trace(tmp_path: Path) -> None:
    bad = tmp_path / "t.json"
    bad.write_text("{}")
    result = CliRunner().invoke(app, ["kernel", "extract", str(bad)])
    assert result.exit_code == 2 and "not a torch-profiler Chrome trace" in result.output
