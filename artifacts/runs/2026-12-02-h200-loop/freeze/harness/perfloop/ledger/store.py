"""The run folder: atomic file writes and the append-only, hash-chained `events.jsonl`."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from perfloop.ledger.records import GENESIS, Event

EVENTS = "events.jsonl"
MANIFEST = "manifest.json"
HEAD = "head.json"


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write via a temp file in the same folder, fsync, then rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_model(path: Path, model: BaseModel) -> Path:
    """Atomically write a pydantic record as indented JSON."""
    return atomic_write_text(path, model.model_dump_json(indent=2) + "\n")


def canonical_line(event: Event) -> bytes:
    """The exact bytes of an event's line (sorted keys, no spaces), newline included."""
    return (json.dumps(event.model_dump(mode="json"), sort_keys=True, separators=(",", ":")) + "\n").encode()


def head_of(lines: list[bytes]) -> dict[str, Any]:
    """What `head.json` holds for these lines: their count, the SHA-256 of the last line and the line
    itself (it anchors the last line, which no later line hashes; written before the line, so a
    kill between the two writes can be rolled forward and never needs re-anchoring)."""
    if not lines:
        return {"events": 0, "sha256": GENESIS, "line": ""}
    return {"events": len(lines), "sha256": sha256_bytes(lines[-1]), "line": lines[-1].decode()}


def _parses(line: bytes) -> bool:
    try:
        Event.model_validate_json(line)
    except ValueError:
        return False
    return True


class Ledger:
    """One run's folder: `manifest.json`, `events.jsonl` and the files the events record."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.events_path = self.root / EVENTS

    def rel(self, path: Path) -> str:
        """A path relative to the run root, as events record it."""
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def raw_lines(self) -> list[bytes]:
        """Complete lines of `events.jsonl`; a torn last line (crash mid-append) is left out."""
        if not self.events_path.exists():
            return []
        data = self.events_path.read_bytes()
        lines = data.split(b"\n")
        return [line + b"\n" for line in lines[:-1]]

    def events(self) -> list[Event]:
        """Every complete event, in order."""
        return [Event.model_validate_json(line) for line in self.raw_lines()]

    def repair_tail(self) -> list[str]:
        """After a crash, before appending: drop a torn (unparseable) last line and finish an append that
        `head.json` announced but the kill cut off. Never re-anchors a complete line: a complete line
        that `head.json` does not anchor is left for `ledger verify` to name.

        Returns one message per repair made (empty when nothing needed repair).
        """
        if not self.events_path.exists():
            return []
        done: list[str] = []
        data = self.events_path.read_bytes()
        tail = data[data.rfind(b"\n") + 1 :]
        if tail and not _parses(tail):
            atomic_write_bytes(self.events_path, data[: len(data) - len(tail)])
            done.append(f"dropped a torn last line of {EVENTS} ({len(tail)} bytes, unparseable)")
        lines = self.raw_lines()
        head = self.head() or {}
        pending = str(head.get("line", "")).encode()
        prev = sha256_bytes(lines[-1]) if lines else GENESIS
        announced = head.get("events") == len(lines) + 1 and sha256_bytes(pending) == head.get("sha256")
        if announced and _parses(pending) and Event.model_validate_json(pending).prev_sha256 == prev:
            with open(self.events_path, "ab") as fh:
                fh.write(pending)
                fh.flush()
                os.fsync(fh.fileno())
            done.append(f"finished appending line {len(lines) + 1}, which {HEAD} had announced")
        return done

    def head(self) -> dict[str, Any] | None:
        """The anchor `head.json`: event count and the SHA-256 of the last line."""
        path = self.root / HEAD
        return json.loads(path.read_text()) if path.exists() else None

    def _write_head(self, lines: list[bytes]) -> None:
        atomic_write_text(self.root / HEAD, json.dumps(head_of(lines), sort_keys=True) + "\n")

    def recorded_files(self) -> dict[str, str]:
        """Every file any event recorded, with its hash."""
        files: dict[str, str] = {}
        for event in self.events():
            files.update(event.files)
        return files

    def append(
        self,
        kind: str,
        state: str,
        round: int = 0,
        data: dict[str, Any] | None = None,
        files: list[Path] | None = None,
    ) -> Event:
        """Append one event chained to the previous line, recording the hashes of `files`.

        A file, once recorded, is evidence: recording it again with other contents is refused.
        """
        lines = self.raw_lines()
        prev = hashlib.sha256(lines[-1]).hexdigest() if lines else GENESIS
        known = self.recorded_files()
        hashes: dict[str, str] = {}
        for path in files or []:
            rel = self.rel(path)
            digest = sha256_file(self.root / rel)
            if rel in known and known[rel] != digest:
                raise ValueError(f"{rel} is already recorded with other contents; records are immutable")
            hashes[rel] = digest
        event = Event(
            seq=len(lines),
            ts=time.time(),
            kind=kind,
            state=state,
            round=round,
            data=data or {},
            files=hashes,
            prev_sha256=prev,
        )
        self.root.mkdir(parents=True, exist_ok=True)
        # head.json first: a kill before the line lands leaves an announced line `repair_tail` finishes.
        self._write_head([*lines, canonical_line(event)])
        with open(self.events_path, "ab") as fh:
            fh.write(canonical_line(event))
            fh.flush()
            os.fsync(fh.fileno())
        return event

    def write_model(self, rel: str, model: BaseModel) -> Path:
        """Atomically write a record under the run root."""
        return atomic_write_model(self.root / rel, model)

    def write_text(self, rel: str, text: str) -> Path:
        """Atomically write a text file under the run root."""
        return atomic_write_text(self.root / rel, text)
