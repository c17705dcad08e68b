"""The playbook reads typed profiler rows (never display text) and cites rows by their stable id."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from perfloop.engine.config import EngineConfig
from perfloop.ledger.records import ProfileRecord
from perfloop.loop.gates import available_rows
from perfloop.loop.patchers.playbook import cuda_graphs
from perfloop.profilers.tables import analyze

CUDA_TRACE = Path(__file__).parents[1] / "profilers" / "data" / "cuda_graph_trace.json"


def test_cuda_graphs_rule_cites_the_decode_verdict_row(tmp_path: Path) -> None:
    profile = ProfileRecord(trace=str(CUDA_TRACE), tables=analyze(CUDA_TRACE, tmp_path, formats=("json",)))
    evidence = SimpleNamespace(profile=profile)  # the rule reads only the round's tables
    eager = EngineConfig(model="preset:tiny-qwen3", enforce_eager=True)
    finding = cuda_graphs(eager, evidence)
    assert finding is not None and finding.change == {"enforce_eager": False}
    assert finding.cites == ["decode/host_table/verdict:launch-bound"]
    assert set(finding.cites) <= available_rows(profile)
    assert "device idle 37.4%" in finding.rationale
    assert cuda_graphs(eager.model_copy(update={"enforce_eager": False}), evidence) is None
