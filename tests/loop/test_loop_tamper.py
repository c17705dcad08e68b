"""Tamper evidence on a real loop ledger: any edited record or round file is named by `ledger verify`."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FakeBackend, ScriptedPatcher, make_spec, run_cli, set_config

from perfloop.ledger.verify import verify_ledger
from perfloop.loop.machine import Run


def _run(tmp_path: Path, repo: Path) -> Run:
    edits = [set_config(block_size=32), set_config(enable_prefix_caching=True)]
    run = Run.create(make_spec(repo, tmp_path), FakeBackend(), ScriptedPatcher(edits))
    run.drive()
    return run


def test_every_recorded_file_edit_is_named(tmp_path: Path, target_repo: Path) -> None:
    run = _run(tmp_path, target_repo)
    recorded = run.ledger.recorded_files()
    assert any(r.startswith("rounds/001/") for r in recorded) and "freeze/freeze.json" in recorded
    for rel in recorded:
        path = run.root / rel
        original = path.read_bytes()
        path.write_bytes(original + b" ")
        report = verify_ledger(run.root)
        assert not report.ok and report.broken == rel, (rel, report)
        path.write_bytes(original)
    assert verify_ledger(run.root).ok


def test_editing_a_past_event_is_named_by_the_cli(tmp_path: Path, target_repo: Path) -> None:
    run = _run(tmp_path, target_repo)
    lines = run.ledger.events_path.read_text().splitlines()
    event = json.loads(lines[5])
    event["data"]["loop"]["nonadvancing"] = 0
    event["state"] = "COMPLETE"
    lines[5] = json.dumps(event, sort_keys=True, separators=(",", ":"))
    run.ledger.events_path.write_text("\n".join(lines) + "\n")
    result = run_cli("ledger", "verify", str(run.root))
    assert result.returncode == 1
    assert "events.jsonl line 6" in result.stdout


def test_verify_passes_on_an_untouched_run_via_the_cli(tmp_path: Path, target_repo: Path) -> None:
    run = _run(tmp_path, target_repo)
    result = run_cli("ledger", "verify", str(run.root))
    assert result.returncode == 0 and "ledger ok" in result.stdout
