"""Tamper evidence on a real loop ledger: every tamper is named by `ledger verify` (the folder alone, or
against the anchor committed in the target repo), and read-only commands never turn it back into
"verified"."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FakeBackend, ScriptedPatcher, make_spec, set_config
from typer.testing import CliRunner

from perfloop.cli import app
from perfloop.ledger.anchor import LedgerBrokenError, read_anchor, write_anchor
from perfloop.ledger.records import GENESIS, Event
from perfloop.ledger.store import HEAD, Ledger, canonical_line, head_of, sha256_bytes, sha256_file
from perfloop.ledger.verify import verify_ledger
from perfloop.loop.machine import Run


def run_cli(*args: str):  # noqa: ANN201
    """`perfloop ...` in process (the commands under test are the same; the start-up is not repeated)."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=False, terminal_width=400)
    result.returncode = result.exit_code
    return result


def _run(tmp_path: Path, repo: Path) -> Run:
    # Round 1 is rejected (no gain), round 2 accepted, round 3 finds the objective met: COMPLETE.
    edits = [set_config(block_size=32), set_config(enable_prefix_caching=True)]
    run = Run.create(make_spec(repo, tmp_path), FakeBackend(), ScriptedPatcher(edits))
    run.drive()
    assert run.state.state == "COMPLETE"
    return run


def _events(run: Run) -> list[dict]:
    return [json.loads(line) for line in run.ledger.raw_lines()]


def _write(run: Run, events: list[dict], rechain: bool) -> None:
    """Write events back; `rechain` re-links every hash and rewrites head.json as a thorough forger would."""
    lines, prev = [], GENESIS
    for seq, raw in enumerate(events):
        if rechain:
            raw = raw | {"seq": seq, "prev_sha256": prev}
        line = canonical_line(Event.model_validate(raw))
        lines.append(line)
        prev = sha256_bytes(line)
    run.ledger.events_path.write_bytes(b"".join(lines))
    if rechain:
        (run.root / HEAD).write_text(json.dumps(head_of(lines), sort_keys=True) + "\n")


def _first_line_of_round(events: list[dict], rnd: int) -> int:
    return next(i for i, e in enumerate(events) if e["round"] == rnd)


def edit_middle(run: Run) -> str:
    events = _events(run)
    events[5]["data"]["loop"]["nonadvancing"] = 7
    _write(run, events, rechain=False)
    return "events.jsonl line 6"


def delete_middle(run: Run) -> str:
    events = _events(run)
    del events[4]
    _write(run, events, rechain=False)
    return "events.jsonl line 5"


def swap(run: Run) -> str:
    events = _events(run)
    events[6], events[7] = events[7], events[6]
    _write(run, events, rechain=False)
    return "events.jsonl line 7"


def forge_last(run: Run) -> str:
    # A complete, well-chained line appended with head.json brought along: only the final anchor sees it.
    n = len(run.ledger.raw_lines())
    loop = run.state.model_copy(update={"round": 9, "reason": "objective met (forged)"}).model_dump()
    run.ledger.append("transition", "COMPLETE", round=9, data={"from": "GAP", "loop": loop})
    return f"events.jsonl line {n + 1}"


def rechain_accepted(run: Run) -> str:
    # Flip round 1's rejection to accepted, re-hash the file in its event and re-chain everything.
    review = run.root / "rounds/001/review.json"
    doc = json.loads(review.read_text())
    doc.update(accepted=True, verdict="ADVANCED", rejected_by=[])
    review.write_text(json.dumps(doc, indent=2) + "\n")
    events = _events(run)
    for e in events:
        if "rounds/001/review.json" in e["files"]:
            e["files"]["rounds/001/review.json"] = sha256_file(review)
    _write(run, events, rechain=True)
    return f"events.jsonl line {len(events)}"


def truncate_round(run: Run) -> str:
    # Erase the accepted round 2 and everything after it, leaving a consistent folder.
    events = _events(run)
    _write(run, events[: _first_line_of_round(events, 2)], rechain=True)
    return "branch anchor refs/perfloop/ledger/test-run"


TAMPERS: list[Callable[[Run], str]] = [
    edit_middle,
    delete_middle,
    swap,
    forge_last,
    rechain_accepted,
    truncate_round,
]


@pytest.mark.parametrize("tamper", TAMPERS, ids=[t.__name__ for t in TAMPERS])
def test_every_tamper_is_named_and_stays_broken(tmp_path: Path, target_repo: Path, tamper) -> None:  # noqa: ANN001
    run = _run(tmp_path, target_repo)
    assert verify_ledger(run.root, against_branch=True).ok
    broken = tamper(run)
    result = run_cli("ledger", "verify", "--against-branch", str(run.root))
    assert result.returncode == 1 and f"ledger broken: {broken}" in " ".join(result.stdout.split()), (
        result.stdout
    )
    before = {p: p.read_bytes() for p in (run.ledger.events_path, run.root / HEAD)}
    status = run_cli("goal", "status", str(run.root))
    report = run_cli("report", str(run.root))
    assert status.returncode == 0 and report.returncode == 0
    assert "BROKEN" in status.stdout and "verified" not in status.stdout
    assert {p: p.read_bytes() for p in before} == before  # read-only commands wrote nothing
    text = (run.root / "report.md").read_text()
    assert f"**BROKEN** at {broken}" in text and "Ledger: verified" not in text
    assert not verify_ledger(run.root, against_branch=True).ok
    # Nor does a writer carry on from it, or move the anchor to it.
    anchor = read_anchor(target_repo, "test-run")
    with pytest.raises(LedgerBrokenError, match="refusing to continue"):
        Run(run.root, FakeBackend(), ScriptedPatcher([])).drive()
    assert read_anchor(target_repo, "test-run") == anchor


def test_an_anchor_never_moves_to_a_ledger_that_does_not_extend_it(tmp_path: Path, target_repo: Path) -> None:
    run = _run(tmp_path, target_repo)
    lines = run.ledger.raw_lines()
    _commit, final = read_anchor(target_repo, "test-run")
    later = final.model_copy(update={"events": final.events + 1, "sha256": "0" * 64})
    with pytest.raises(LedgerBrokenError, match="after the run ended"):
        write_anchor(target_repo, later, [*lines, b"{}\n"])
    earlier = final.model_copy(update={"events": 3, "final": False})
    with pytest.raises(LedgerBrokenError, match="lines removed"):
        write_anchor(target_repo, earlier, lines[:3])


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


def test_a_report_on_a_record_with_its_median_outside_its_interval_says_broken(
    tmp_path: Path, target_repo: Path
) -> None:
    run = _run(tmp_path, target_repo)
    gap = run.root / "rounds/001/gap.json"
    doc = json.loads(gap.read_text())
    doc.update(median_ratio=0.5, ci_low=0.9, ci_high=1.1)  # issue 14: yerr would be negative
    gap.write_text(json.dumps(doc))
    result = run_cli("report", str(run.root))
    assert result.returncode == 0
    text = (run.root / "report.md").read_text()
    assert "**BROKEN**: median 0.5000 outside its interval" in text
    assert "**BROKEN** at rounds/001/gap.json" in text


def test_verify_passes_on_an_untouched_run_via_the_cli(tmp_path: Path, target_repo: Path) -> None:
    run = _run(tmp_path, target_repo)
    result = run_cli("ledger", "verify", "--against-branch", str(run.root))
    assert (
        result.returncode == 0
        and "ledger ok" in result.stdout
        and "refs/perfloop/ledger/test-run" in result.stdout
    )
    assert Ledger(run.root).repair_tail() == []
