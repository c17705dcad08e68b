"""NCU digests: raw-page CSV read into a bound and a reading; a clean message where ncu is absent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfloop.cli import app
from perfloop.kernel.ncu import digest, parse_raw_csv

RAW = (
    "==PROF== Connected to process 1\n"
    '"ID","Kernel Name","gpu__time_duration.sum","gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed",'
    '"sm__throughput.avg.pct_of_peak_sustained_elapsed","launch__registers_per_thread",'
    '"sm__warps_active.avg.pct_of_peak_sustained_active",'
    '"smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio",'
    '"smsp__average_warps_issue_stalled_wait_per_issue_active.ratio"\n'
    '"","","nsecond","%","%","register/thread","%","ratio","ratio"\n'
    '"0","_gemv_kernel","13,312","{dram}","21.5","40","61.0","7.25","0.5"\n'
)


def test_memory_bound_digest() -> None:
    d = digest(parse_raw_csv(RAW.format(dram="88.4")), "baseline", "qkv")
    assert d.bound == "memory" and d.kernel == "_gemv_kernel"
    assert d.duration_us == pytest.approx(13.312) and d.registers_per_thread == 40
    assert d.top_stalls[0].startswith("long_scoreboard")
    assert "DRAM at 88 %" in d.reading


def test_latency_bound_digest() -> None:
    d = digest(parse_raw_csv(RAW.format(dram="31.0")), "candidate", "o_proj")
    assert d.bound == "latency" and "occupancy 61 % (at most" in d.reading


@pytest.mark.skipif(shutil.which("ncu") is not None, reason="ncu present: the real run is a GPU test")
def test_missing_ncu_is_a_clear_error(task_dir: Path) -> None:
    result = CliRunner().invoke(app, ["kernel", "ncu", str(task_dir), "--row", "qkv"])
    assert result.exit_code == 2 and "ncu (Nsight Compute) is not on PATH" in result.output
