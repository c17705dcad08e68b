"""The state machine end to end on a scratch repo, with scripted measurements."""

from __future__ import annotations

import json
from pathlib import Path

import git
from conftest import FakeBackend, ScriptedPatcher, make_spec, set_config

from perfloop.ledger.verify import verify_ledger
from perfloop.loop.machine import Run


def _run(tmp_path: Path, repo: Path, edits: list, **spec_over: object) -> Run:
    spec = make_spec(repo, tmp_path, **spec_over)
    run = Run.create(spec, FakeBackend(), ScriptedPatcher(edits))
    run.drive()
    return run


def _transitions(run: Run) -> list[str]:
    return [e.state for e in run.ledger.events() if e.kind == "transition"]


def test_accepted_patch_advances_the_loop_branch_then_completes(tmp_path: Path, target_repo: Path) -> None:
    user_head = git.Repo(target_repo).head.commit.hexsha
    run = _run(tmp_path, target_repo, [set_config(enable_prefix_caching=True)])
    assert run.state.state == "COMPLETE"
    states = _transitions(run)
    assert states[:10] == [
        "FREEZE",
        "BENCH",
        "GAP",
        "PROFILE",
        "PATCH",
        "VALIDATE",
        "REVALIDATE",
        "REVIEW",
        "RECORD",
        "BENCH",
    ]
    repo = git.Repo(target_repo)
    assert repo.heads["perfloop/test-run"].commit.hexsha == run.state.best_commit != user_head
    assert repo.head.commit.hexsha == user_head and not repo.is_dirty(untracked_files=True)
    assert len(repo.git.worktree("list").splitlines()) == 1
    assert verify_ledger(run.root).ok
    summary = json.loads((run.root / "rounds/001/summary.json").read_text())
    assert summary["accepted"] and summary["verdict"] == "ADVANCED"


def test_no_rule_ends_no_go_with_the_reason(tmp_path: Path, target_repo: Path) -> None:
    run = _run(tmp_path, target_repo, [])
    assert run.state.state == "NO_GO" and "script exhausted" in run.state.reason


def test_three_non_advancing_rounds_stall_after_a_research_round(tmp_path: Path, target_repo: Path) -> None:
    noop = [set_config(block_size=16 + i) for i in range(3)]
    run = _run(tmp_path, target_repo, noop)
    assert run.state.state == "NO_PROGRESS"
    assert (run.root / "rounds/003/peer-profile.json").exists()
    assert not (run.root / "rounds/002/peer-profile.json").exists()
    assert git.Repo(target_repo).heads["perfloop/test-run"].commit.hexsha == run.manifest.base_commit


def test_round_budget_ends_budget_limited(tmp_path: Path, target_repo: Path) -> None:
    noop = [set_config(block_size=16 + i) for i in range(3)]
    run = _run(tmp_path, target_repo, noop, budgets={"max_rounds": 2})
    assert run.state.state == "BUDGET_LIMITED"


def test_dirty_target_is_refused(tmp_path: Path, target_repo: Path) -> None:
    import pytest

    from perfloop.loop.worktrees import TargetRepoError

    (target_repo / "engine.yaml").write_text("model: x\n")
    with pytest.raises(TargetRepoError, match="uncommitted"):
        Run.create(make_spec(target_repo, tmp_path), FakeBackend(), ScriptedPatcher([]))


def test_a_state_failing_three_times_ends_blocked(tmp_path: Path, target_repo: Path) -> None:
    import pytest

    class Broken(FakeBackend):
        def profile(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise RuntimeError("profiler cannot start")

    spec = make_spec(target_repo, tmp_path)
    run = Run.create(spec, Broken(), ScriptedPatcher([]))
    for _ in range(2):
        with pytest.raises(RuntimeError, match="profiler cannot start"):
            Run(run.root, Broken(), ScriptedPatcher([])).drive()
    final = Run(run.root, Broken(), ScriptedPatcher([]))
    assert final.drive() == "BLOCKED" and "profiler cannot start" in final.state.reason
    assert verify_ledger(run.root).ok
