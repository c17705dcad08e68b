"""The ledger's chain, atomic writes, tamper detection and schema export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfloop.ledger.records import GateResult, Manifest
from perfloop.ledger.store import Ledger
from perfloop.ledger.verify import verify_ledger
from perfloop.schemas import render, schema_documents

ROOT = Path(__file__).resolve().parents[2]


def _ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(tmp_path / "run")
    manifest = Manifest(
        run_id="r1",
        created=0.0,
        perfloop_version="0",
        spec={},
        environment={},
        target_repo="/x",
        loop_branch="perfloop/r1",
        base_commit="abc",
    )
    path = ledger.write_model("manifest.json", manifest)
    ledger.append("init", "INIT", files=[path])
    for i in range(3):
        gate = ledger.write_model(f"rounds/00{i}/gate.json", GateResult(gate="g", passed=True, evidence="e"))
        ledger.append("record", "RECORD", round=i, data={"i": i}, files=[gate])
    return ledger


def test_fresh_ledger_verifies(tmp_path: Path) -> None:
    report = verify_ledger(_ledger(tmp_path).root)
    assert report.ok and report.events == 4 and report.files == 4


def test_every_event_chains_to_the_previous_line(tmp_path: Path) -> None:
    import hashlib

    ledger = _ledger(tmp_path)
    lines = ledger.raw_lines()
    for prev, line in zip(lines, lines[1:], strict=False):
        assert json.loads(line)["prev_sha256"] == hashlib.sha256(prev).hexdigest()


@pytest.mark.parametrize("rel", ["manifest.json", "rounds/000/gate.json", "rounds/002/gate.json"])
def test_editing_a_recorded_file_is_named(tmp_path: Path, rel: str) -> None:
    ledger = _ledger(tmp_path)
    path = ledger.root / rel
    path.write_text(path.read_text().replace('"passed": true', '"passed": false').replace("abc", "abd"))
    report = verify_ledger(ledger.root)
    assert not report.ok and report.broken == rel


def test_recorded_files_may_be_absent_only_by_name_and_present_ones_are_still_checked(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    (ledger.root / "rounds/001/gate.json").unlink()
    assert verify_ledger(ledger.root).broken == "rounds/001/gate.json"
    report = verify_ledger(ledger.root, allow_missing=["rounds/*/gate.json"])
    assert report.ok and len(report.absent) == 1
    assert report.absent[0].startswith("rounds/001/gate.json (sha256 ")
    edited = ledger.root / "rounds/002/gate.json"
    edited.write_text(edited.read_text().replace('"passed": true', '"passed": false'))
    assert verify_ledger(ledger.root, allow_missing=["rounds/*/gate.json"]).broken == "rounds/002/gate.json"


@pytest.mark.parametrize("index", [0, 1, 3])
def test_editing_any_event_line_is_named(tmp_path: Path, index: int) -> None:
    ledger = _ledger(tmp_path)
    lines = ledger.raw_lines()
    event = json.loads(lines[index])
    event["data"]["edited"] = True
    lines[index] = (json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n").encode()
    ledger.events_path.write_bytes(b"".join(lines))
    report = verify_ledger(ledger.root)
    assert not report.ok and report.broken == f"events.jsonl line {index + 1}"


@pytest.mark.parametrize("index", [1, 2])
def test_deleting_a_middle_event_names_the_missing_line(tmp_path: Path, index: int) -> None:
    ledger = _ledger(tmp_path)
    lines = ledger.raw_lines()
    ledger.events_path.write_bytes(b"".join(lines[:index] + lines[index + 1 :]))
    report = verify_ledger(ledger.root)
    assert not report.ok and report.broken == f"events.jsonl line {index + 1}", report
    assert "deleted" in (report.problem or "")


def test_swapping_two_events_names_the_first_swapped_line(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    lines = ledger.raw_lines()
    lines[1], lines[2] = lines[2], lines[1]
    ledger.events_path.write_bytes(b"".join(lines))
    report = verify_ledger(ledger.root)
    assert not report.ok and report.broken == "events.jsonl line 2", report


def test_a_torn_last_line_is_reported_then_repaired(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    with open(ledger.events_path, "ab") as fh:
        fh.write(b'{"seq": 4, "kind"')
    assert not verify_ledger(ledger.root).ok
    assert len(ledger.events()) == 4
    assert ledger.repair_tail() == ["dropped a torn last line of events.jsonl (17 bytes, unparseable)"]
    assert verify_ledger(ledger.root).ok


def test_an_append_cut_off_after_head_json_is_finished_not_re_anchored(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    lines = ledger.raw_lines()
    # A kill between the two writes: head.json already announces the last line, the file lacks it.
    ledger.events_path.write_bytes(b"".join(lines[:-1]) + lines[-1][:10])
    assert ledger.repair_tail() == [
        "dropped a torn last line of events.jsonl (10 bytes, unparseable)",
        "finished appending line 4, which head.json had announced",
    ]
    assert ledger.raw_lines() == lines and verify_ledger(ledger.root).ok


def test_repair_never_anchors_a_complete_forged_line(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    head = ledger.head()
    ledger.append("transition", "COMPLETE", data={"reason": "objective met"})
    (ledger.root / "head.json").write_text(json.dumps(head))  # the forger leaves head.json alone
    before = ledger.events_path.read_bytes()
    assert ledger.repair_tail() == []
    assert ledger.events_path.read_bytes() == before and ledger.head() == head
    report = verify_ledger(ledger.root)
    assert not report.ok and report.broken == "events.jsonl line 5"


def test_a_recorded_file_cannot_be_recorded_again_with_other_contents(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    path = ledger.write_model("rounds/000/gate.json", GateResult(gate="g", passed=False, evidence="x"))
    with pytest.raises(ValueError, match="immutable"):
        ledger.append("record", "RECORD", files=[path])


def test_exported_schemas_are_current() -> None:
    folder = ROOT / "artifacts" / "schemas"
    docs = schema_documents()
    for name, doc in docs.items():
        path = folder / name
        assert path.exists(), f"{name} missing: run `perfloop ledger schemas --out artifacts/schemas`"
        assert path.read_text() == render(doc), f"{name} is stale: rerun `perfloop ledger schemas`"
    assert {p.name for p in folder.glob("*.schema.json")} == set(docs)
