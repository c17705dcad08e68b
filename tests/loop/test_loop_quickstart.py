"""The README's main job: `perfloop goal` with no arguments runs a real loop to a verified ledger."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_cli

from perfloop.ledger.verify import verify_ledger


@pytest.mark.slow
def test_quickstart_runs_a_real_loop(tmp_path: Path) -> None:
    result = run_cli("goal", "--artifact-root", str(tmp_path / "artifacts"), cwd=tmp_path, timeout=1800)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    match = re.search(r"report: (\S+report\.md)", out.replace("\n", ""))
    assert match, out[-2000:]
    root = next((tmp_path / "artifacts").glob("quickstart-2*"))
    assert verify_ledger(root, against_branch=True).ok
    freeze = json.loads((root / "freeze/freeze.json").read_text())
    margin = 0.05
    report = (root / "report.md").read_text()
    assert "deliberately mis-tuned" in report
    if freeze["noise_band"] > margin:
        # A host too noisy for a 5% margin ends early and says so, with the band and the margin.
        band = f"band ±{freeze['noise_band']:.1%} > margin 5.0%"
        assert f"UNPROVABLE: UNPROVABLE on this host: {band}" in " ".join(out.split())
        assert "**Verdict: UNPROVABLE**" in report and not list(root.glob("rounds/*"))
        return
    summaries = [json.loads(p.read_text()) for p in sorted(root.glob("rounds/*/summary.json"))]
    accepted = [s for s in summaries if s["accepted"]]
    rejected = [s for s in summaries if not s["accepted"]]
    assert accepted, summaries
    assert all(s["rejected_by"] and s["why"] for s in rejected)
    for s in accepted:
        reval = json.loads((root / f"rounds/{s['round']:03d}/revalidate.json").read_text())
        assert reval["metrics"]["output_throughput"]["ci_low"] > 1 + freeze["noise_band"]
    assert all(not s["patch"] or s["patch"]["rule"] != "cuda_graphs" for s in summaries)  # a CPU target
