"""`ledger verify`: check the event chain and every recorded file; name the first broken record.

Read-only: verifying never writes, so a broken ledger stays broken until someone looks at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from perfloop.ledger.anchor import anchor_ref, check_anchor, read_anchor
from perfloop.ledger.records import GENESIS, Event, Manifest
from perfloop.ledger.store import EVENTS, HEAD, MANIFEST, Ledger, canonical_line, sha256_bytes, sha256_file


class VerifyReport(BaseModel):
    """Outcome of a verification: ok, what was checked, and the first broken record if any."""

    ok: bool
    events: int
    files: int
    broken: str | None = None
    problem: str | None = None
    anchor: str | None = None  # "ref at commit: N events" when checked against the branch
    absent: list[str] = Field(
        default_factory=list, description="Recorded files absent by permission (allow_missing), with hashes."
    )


def _fail(events: int, files: int, broken: str, problem: str) -> VerifyReport:
    return VerifyReport(ok=False, events=events, files=files, broken=broken, problem=problem)


def _line_problem(seq: int, line: bytes, prev: str) -> tuple[str, str] | None:
    """(broken line, problem) for line `seq` (0-based) given the hash of the line before it."""
    where = f"{EVENTS} line {seq + 1}"
    try:
        event = Event.model_validate_json(line)
    except ValidationError as exc:
        return where, f"not a valid event: {exc.errors()[0]['msg']}"
    # Sequence first: after a deletion or a swap the line here is the wrong one, not the one before.
    if event.seq != seq:
        what = "deleted" if event.seq > seq else "duplicated"
        return where, f"holds event {event.seq}, expected {seq}: a line was {what} or lines swapped here"
    if event.prev_sha256 != prev:
        if seq == 0:
            return where, "does not start the chain"
        return f"{EVENTS} line {seq}", f"edited: its hash no longer matches prev_sha256 of line {seq + 1}"
    if canonical_line(event) != line:
        return where, "line is not in canonical form (edited by hand?)"
    return None


def _head_problem(head: dict | None, lines: list[bytes]) -> tuple[str, str] | None:
    n = len(lines)
    if head is None:
        return HEAD, "missing"
    anchored = int(head.get("events", -1))
    if anchored > n:
        return f"{EVENTS} line {n + 1}", f"missing: {HEAD} anchors {anchored} events (lines removed)"
    if anchored < n:
        return f"{EVENTS} line {anchored + 1}", f"not anchored by {HEAD} (forged, or {HEAD} rolled back)"
    if (sha256_bytes(lines[-1]) if lines else GENESIS) != head.get("sha256"):
        return f"{EVENTS} line {n}", f"does not match {HEAD} (last line edited)"
    return None


def verify_ledger(
    root: Path, against_branch: bool = False, allow_missing: Sequence[str] = ()
) -> VerifyReport:
    """Walk `events.jsonl` checking each line's chain hash and shape, then every recorded file's hash.

    `against_branch` also checks the folder against the anchor committed in the target repo.
    `allow_missing`: globs (on paths relative to the run) of recorded files that may be absent, e.g. a
    large trace left out of a committed copy; they are listed in `absent`, and any present file is
    still checked.
    """
    ledger = Ledger(root)
    if not (root / MANIFEST).exists():
        return _fail(0, 0, MANIFEST, "missing")
    if not ledger.events_path.exists():
        return _fail(0, 0, EVENTS, "missing")
    data = ledger.events_path.read_bytes()
    if data and not data.endswith(b"\n"):
        return _fail(
            0, 0, f"{EVENTS} (last line)", "torn line: the loop crashed mid-append; resume repairs it"
        )
    prev = GENESIS
    recorded: dict[str, tuple[str, int]] = {}
    lines = ledger.raw_lines()
    for seq, line in enumerate(lines):
        problem = _line_problem(seq, line, prev)
        if problem:
            return _fail(seq, 0, *problem)
        for rel, digest in Event.model_validate_json(line).files.items():
            recorded[rel] = (digest, seq)
        prev = sha256_bytes(line)
    problem = _head_problem(ledger.head(), lines)
    if problem:
        return _fail(len(lines), 0, *problem)
    if MANIFEST not in recorded:
        return _fail(len(lines), 0, MANIFEST, "not recorded by any event")
    absent = []
    for count, (rel, (digest, seq)) in enumerate(sorted(recorded.items(), key=lambda kv: kv[1][1])):
        path = root / rel
        if not path.exists() and any(fnmatch(rel, glob) for glob in allow_missing):
            absent.append(f"{rel} (sha256 {digest})")
            continue
        if not path.exists():
            return _fail(len(lines), count, rel, f"missing (recorded by event {seq})")
        if sha256_file(path) != digest:
            return _fail(len(lines), count, rel, f"contents changed since event {seq} recorded them")
    report = VerifyReport(ok=True, events=len(lines), files=len(recorded), absent=absent)
    return _against_branch(root, lines, report) if against_branch else report


def _against_branch(root: Path, lines: list[bytes], report: VerifyReport) -> VerifyReport:
    manifest = Manifest.model_validate_json((root / MANIFEST).read_text())
    ref = anchor_ref(manifest.run_id)
    repo = Path(manifest.target_repo)
    found = read_anchor(repo, manifest.run_id) if repo.exists() else None
    if found is None:
        return _fail(report.events, report.files, f"branch anchor {ref}", f"missing in {repo}")
    commit, anchor = found
    problem = check_anchor(lines, anchor, ref)
    if problem:
        return _fail(report.events, report.files, *problem)
    return report.model_copy(update={"anchor": f"{ref} at {commit[:12]}: {anchor.events} events"})
