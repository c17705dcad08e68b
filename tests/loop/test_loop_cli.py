"""The `perfloop goal` CLI: spec errors name the field; status, stop and report on a run folder."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import FakeBackend, ScriptedPatcher, make_spec, run_cli, set_config

from perfloop.loop.machine import Run


def test_bad_spec_names_the_field(tmp_path: Path, target_repo: Path) -> None:
    spec = {
        "target": {
            "repo": str(target_repo),
            "engine_config_file": "engine.yaml",
            "allowed_paths": [],
            "correctness": "true",
        },
        "workload": {"kind": "random"},
    }
    path = tmp_path / "goal.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run_cli("goal", "run", "--spec", str(path))
    assert result.returncode == 2
    assert "target.allowed_paths" in result.stderr + result.stdout


def test_missing_peer_for_beat_peer_names_peers(tmp_path: Path, target_repo: Path) -> None:
    spec = {
        "target": {
            "repo": str(target_repo),
            "engine_config_file": "engine.yaml",
            "allowed_paths": ["engine.yaml"],
            "correctness": "true",
        },
        "workload": {"kind": "random"},
    }
    path = tmp_path / "goal.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run_cli("goal", "run", "--spec", str(path))
    assert result.returncode == 2 and "peers" in result.stderr + result.stdout


def test_status_report_and_stop(tmp_path: Path, target_repo: Path) -> None:
    edits = [set_config(block_size=32), set_config(enable_prefix_caching=True)]
    run = Run.create(
        make_spec(target_repo, tmp_path, budgets={"max_rounds": 1}), FakeBackend(), ScriptedPatcher(edits)
    )
    run.drive()
    status = run_cli("goal", "status", str(run.root))
    assert status.returncode == 0, status.stderr
    assert "BUDGET_LIMITED" in status.stdout and "beyond_noise" in status.stdout
    report = run_cli("report", str(run.root), "--out", str(tmp_path / "pr.md"))
    assert report.returncode == 0 and (tmp_path / "pr.md").exists()
    stopped = run_cli("goal", "stop", str(run.root))
    assert "BUDGET_LIMITED" in stopped.stdout  # a finished run stays finished


def test_stop_aborts_an_idle_run(tmp_path: Path, target_repo: Path) -> None:
    run = Run.create(make_spec(target_repo, tmp_path), FakeBackend(), ScriptedPatcher([]))
    result = run_cli("goal", "stop", str(run.root))
    assert "ABORTED" in result.stdout
    assert Run(run.root, FakeBackend(), ScriptedPatcher([])).state.state == "ABORTED"
