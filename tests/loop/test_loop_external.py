"""The external patcher round trip: prompt rendered, run waiting, an agent commit submitted and reviewed."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest
import yaml
from conftest import FakeBackend, make_spec

from perfloop.ledger.verify import verify_ledger
from perfloop.loop.machine import LoopError, Run
from perfloop.loop.patchers.external import ExternalPatcher


def test_prompt_wait_commit_submit_review(tmp_path: Path, target_repo: Path) -> None:
    spec = make_spec(target_repo, tmp_path, patcher="external", budgets={"max_rounds": 2})
    run = Run.create(spec, FakeBackend(), ExternalPatcher())
    assert run.drive() == "WAITING_FOR_PATCH"
    prompt = (run.root / "rounds/001/prompt.md").read_text()
    assert "behind" in prompt and "prefill/kernel_table/aten::mm" in prompt
    assert "perfloop goal submit" in prompt and "engine.yaml" in prompt

    # The agent works in the worktree the prompt names, and commits with a Cites: line.
    tree = run.root / "work" / "agent-001"
    assert str(tree) in prompt
    config = yaml.safe_load((tree / "engine.yaml").read_text())
    config["enable_prefix_caching"] = True
    (tree / "engine.yaml").write_text(yaml.safe_dump(config))
    agent = git.Repo(tree)
    agent.git.add("-A")
    actor = git.Actor("agent", "agent@example.com")
    sha = agent.index.commit(
        "Enable prefix caching\n\nCites: all/engine_stats/counters", author=actor, committer=actor
    ).hexsha

    # A fresh process would reopen the run from disk; do the same here.
    again = Run(run.root, FakeBackend(), ExternalPatcher())
    again.submit(None, "", [])
    assert again.drive() == "COMPLETE"  # round 2 measures the target level with the peer
    patch = json.loads((run.root / "rounds/001/patch.json").read_text())
    assert patch["commit"] == sha and patch["cited_rows"] == ["all/engine_stats/counters"]
    review = json.loads((run.root / "rounds/001/review.json").read_text())
    assert review["verdict"] == "ADVANCED", review
    assert (run.root / "rounds/001/revalidate.json").exists()
    assert again.repo.heads[again.manifest.loop_branch].commit.hexsha == sha
    assert not tree.exists()
    assert verify_ledger(run.root).ok


def test_submit_outside_waiting_is_refused(tmp_path: Path, target_repo: Path) -> None:
    run = Run.create(make_spec(target_repo, tmp_path), FakeBackend(), ExternalPatcher())
    with pytest.raises(LoopError, match="not WAITING_FOR_PATCH"):
        run.submit("HEAD", "", [])
