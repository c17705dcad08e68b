"""Planted bad candidates: each is rejected by the gate named for its trick."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import FakeBackend, ScriptedPatcher, make_spec, set_config

from perfloop.ledger.records import ProfileRecord
from perfloop.ledger.verify import verify_ledger
from perfloop.loop.gates import GATES
from perfloop.loop.machine import Run
from perfloop.loop.measurement import Side
from perfloop.loop.spec import GoalSpec


def edit_benchmark(tree: Path) -> None:
    """Touches the benchmark workload/timing code in the target repo."""
    (tree / "bench" / "workload.py").write_text("PROMPTS = 1  # fewer prompts, faster numbers\n")
    set_config(enable_prefix_caching=True)(tree)


def stop_early(tree: Path) -> None:
    """A short max_model_len: requests end before their max_tokens, "throughput" goes up."""
    set_config(max_model_len=64)(tree)


def break_correctness(tree: Path) -> None:
    """Swaps the model: faster maybe, but the outputs are no longer the frozen reference."""
    set_config(model="preset:tiny-llama", enable_prefix_caching=True)(tree)


def reshuffle(tree: Path) -> None:
    """Rewrites the config in another key order with a comment: no real change, no real gain."""
    data = yaml.safe_load((tree / "engine.yaml").read_text())
    text = "# tidy\n" + yaml.safe_dump(dict(reversed(list(data.items()))), sort_keys=False)
    (tree / "engine.yaml").write_text(text)


def leak_key(tree: Path) -> None:
    """A real improvement that also writes an API key into the repo (and so into the round's diff)."""
    set_config(enable_prefix_caching=True)(tree)
    with open(tree / "engine.yaml", "a") as fh:
        fh.write("# api_key: sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789\n")


@pytest.mark.parametrize(
    ("edit", "gate"),
    [
        (edit_benchmark, "protected_code"),
        (stop_early, "output_lengths"),
        (break_correctness, "correctness"),
        (reshuffle, "beyond_noise"),
        (leak_key, "no_secrets"),
    ],
)
def test_planted_candidate_is_rejected_by_its_gate(
    tmp_path: Path, target_repo: Path, edit, gate: str
) -> None:
    spec = make_spec(target_repo, tmp_path, budgets={"max_rounds": 1})
    run = Run.create(spec, FakeBackend(), ScriptedPatcher([edit]))
    run.drive()
    review = json.loads((run.root / "rounds/001/review.json").read_text())
    failed = {g["gate"] for g in review["gates"] if not g["passed"]}
    assert gate in failed, review
    assert not review["accepted"]
    summary = json.loads((run.root / "rounds/001/summary.json").read_text())
    assert summary["rejected_by"] == review["rejected_by"]
    # Rejected candidates stay in the ledger with their SHA and diff, not on the loop branch.
    patch = json.loads((run.root / "rounds/001/patch.json").read_text())
    assert patch["commit"] and (run.root / patch["diff_file"]).exists()
    assert run.repo.heads[run.manifest.loop_branch].commit.hexsha == run.manifest.base_commit
    assert verify_ledger(run.root).ok


def test_a_patch_that_cites_no_table_row_is_rejected(tmp_path: Path, target_repo: Path) -> None:
    spec = make_spec(target_repo, tmp_path, budgets={"max_rounds": 1})
    run = Run.create(spec, FakeBackend(), ScriptedPatcher([set_config(enable_prefix_caching=True)], cites=[]))
    run.drive()
    review = json.loads((run.root / "rounds/001/review.json").read_text())
    assert review["rejected_by"] == ["cites_tables"]


EMPTY_ROW = "decode/host_table/launch:graph_launches"


class EmptyRowBackend(FakeBackend):
    """A profile that also holds a row with no measured data (no graph launches, no time)."""

    def profile(self, side: Side, spec: GoalSpec, out_dir: Path) -> ProfileRecord:
        record = super().profile(side, spec, out_dir)
        empty = {
            "row_id": EMPTY_ROW,
            "section": "launch",
            "item": "graph launches",
            "time_ms": 0.0,
            "count": 0,
        }
        record.tables["decode"] = {"host_table": [empty]}
        return record


@pytest.mark.parametrize(
    ("cites", "evidence"),
    [
        (["prefill/kernel_table#0"], "not in this round's profile: ['prefill/kernel_table#0']"),
        (["prefill/kernel_table/aten::linear"], "not in this round's profile"),
        ([EMPTY_ROW], f"rows with no measured data: ['{EMPTY_ROW}']"),
    ],
    ids=["row-index", "row-not-in-profile", "empty-row"],
)
def test_a_patch_citing_a_missing_or_empty_row_is_rejected(
    tmp_path: Path, target_repo: Path, cites: list[str], evidence: str
) -> None:
    spec = make_spec(target_repo, tmp_path, budgets={"max_rounds": 1})
    patcher = ScriptedPatcher([set_config(enable_prefix_caching=True)], cites=cites)
    run = Run.create(spec, EmptyRowBackend(), patcher)
    run.drive()
    review = json.loads((run.root / "rounds/001/review.json").read_text())
    assert review["rejected_by"] == ["cites_tables"]
    gate = next(g for g in review["gates"] if g["gate"] == "cites_tables")
    assert evidence in gate["evidence"]


def test_a_good_candidate_passes_every_gate(tmp_path: Path, target_repo: Path) -> None:
    spec = make_spec(target_repo, tmp_path, budgets={"max_rounds": 1})
    run = Run.create(spec, FakeBackend(), ScriptedPatcher([set_config(enable_prefix_caching=True)]))
    run.drive()
    review = json.loads((run.root / "rounds/001/review.json").read_text())
    assert review["verdict"] == "ADVANCED" and all(g["passed"] for g in review["gates"])
    assert [g["gate"] for g in review["gates"]] == sorted(GATES, key=lambda g: not GATES[g].static)
