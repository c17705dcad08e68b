"""`ledger verify`: check the event chain and every recorded file; name the first broken record."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ValidationError

from perfloop.ledger.records import GENESIS, Event
from perfloop.ledger.store import EVENTS, HEAD, MANIFEST, Ledger, canonical_line, head_of, sha256_file


class VerifyReport(BaseModel):
    """Outcome of a verification: ok, what was checked, and the first broken record if any."""

    ok: bool
    events: int
    files: int
    broken: str | None = None
    problem: str | None = None


def _fail(events: int, files: int, broken: str, problem: str) -> VerifyReport:
    return VerifyReport(ok=False, events=events, files=files, broken=broken, problem=problem)


def verify_ledger(root: Path) -> VerifyReport:
    """Walk `events.jsonl` checking each line's chain hash and shape, then every recorded file's hash."""
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
        where = f"{EVENTS} line {seq + 1}"
        try:
            event = Event.model_validate_json(line)
        except ValidationError as exc:
            return _fail(seq, 0, where, f"not a valid event: {exc.errors()[0]['msg']}")
        if event.prev_sha256 != prev:
            before = f"{EVENTS} line {seq}"
            return _fail(seq, 0, before, f"edited: its hash no longer matches prev_sha256 of line {seq + 1}")
        if event.seq != seq:
            return _fail(seq, 0, where, f"sequence number {event.seq}, expected {seq}")
        if canonical_line(event) != line:
            return _fail(seq, 0, where, "line is not in canonical form (edited by hand?)")
        for rel, digest in event.files.items():
            recorded[rel] = (digest, seq)
        prev = hashlib.sha256(line).hexdigest()
    if ledger.head() != head_of(lines):
        last = f"{EVENTS} line {len(lines)}"
        return _fail(len(lines), 0, last, f"does not match {HEAD} (last line edited, or lines removed)")
    if MANIFEST not in recorded:
        return _fail(len(lines), 0, MANIFEST, "not recorded by any event")
    for count, (rel, (digest, seq)) in enumerate(sorted(recorded.items(), key=lambda kv: kv[1][1])):
        path = root / rel
        if not path.exists():
            return _fail(len(lines), count, rel, f"missing (recorded by event {seq})")
        if sha256_file(path) != digest:
            return _fail(len(lines), count, rel, f"contents changed since event {seq} recorded them")
    return VerifyReport(ok=True, events=len(lines), files=len(recorded))
