"""What the loop establishes about a candidate before and around running it.

`candidate_facts` reads git only (resolved paths, secrets in every added file, the tree
hash and the trees already measured) for the static gates. `FrozenGuard` keeps the
recorded files of the run while a candidate phase runs and puts back any it changed.
"""

from __future__ import annotations

from pathlib import Path

import git

from perfloop.ledger.evidence_records import CandidateFacts, TamperReport
from perfloop.ledger.records import PatchRecord
from perfloop.ledger.store import Ledger, sha256_bytes, sha256_file
from perfloop.loop import worktrees as wt
from perfloop.loop.harness import HARNESS_DIR
from perfloop.loop.secrets import scan_bytes

GUARD_MAX_BYTES = 4 << 20  # larger recorded files (traces) are checked by hash, not restored


def measured_trees(repo: git.Repo, root: Path, before_round: int) -> dict[str, int]:
    """Tree hash -> first round, of every candidate proposed in an earlier round."""
    trees: dict[str, int] = {}
    for path in sorted((root / "rounds").glob("[0-9][0-9][0-9]/patch.json")):
        rnd = int(path.parent.name)
        patch = PatchRecord.model_validate_json(path.read_text())
        if rnd < before_round and patch.commit:
            trees.setdefault(wt.tree_of(repo, patch.commit), rnd)
    return trees


def candidate_facts(repo: git.Repo, baseline: str, commit: str, root: Path, round_: int) -> CandidateFacts:
    """The static gates' evidence for `commit` against the `baseline` it will be measured with."""
    secrets = [
        f for path, data in wt.added_blobs(repo, baseline, commit).items() for f in scan_bytes(path, data)
    ]
    return CandidateFacts(
        commit=commit,
        tree=wt.tree_of(repo, commit),
        baseline_tree=wt.tree_of(repo, baseline),
        measured_before=measured_trees(repo, root, round_),
        paths=wt.changed_paths(repo, baseline, commit),
        secrets=secrets,
    )


def changed_recorded(ledger: Ledger) -> list[str]:
    """Recorded files whose contents no longer match their recorded hash (or that are gone)."""
    root = ledger.root
    return sorted(
        rel
        for rel, digest in ledger.recorded_files().items()
        if not (root / rel).is_file() or sha256_file(root / rel) != digest
    )


class FrozenGuard:
    """Keeps the run's recorded files and frozen harness while a candidate phase runs."""

    def __init__(self, ledger: Ledger, phase: str) -> None:
        self.ledger, self.phase = ledger, phase
        root = ledger.root
        self.kept: dict[str, bytes] = {}
        self.hashes: dict[str, str] = dict(ledger.recorded_files())
        harness = [p for p in (root / HARNESS_DIR).rglob("*") if p.is_file()]
        for path in harness:
            self.hashes[ledger.rel(path)] = sha256_file(path)
        for rel in self.hashes:
            path = root / rel
            if path.is_file() and path.stat().st_size <= GUARD_MAX_BYTES:
                self.kept[rel] = path.read_bytes()

    def check(self) -> TamperReport | None:
        """What changed since the guard was set; restores every kept file that did."""
        root = self.ledger.root
        changed = [
            rel
            for rel, digest in self.hashes.items()
            if not (root / rel).is_file() or sha256_file(root / rel) != digest
        ]
        extra = [
            self.ledger.rel(p)
            for p in (root / HARNESS_DIR).rglob("*")
            if p.is_file() and self.ledger.rel(p) not in self.hashes
        ]
        if not changed and not extra:
            return None
        restored = []
        for rel in changed:
            data = self.kept.get(rel)
            if data is not None and sha256_bytes(data) == self.hashes[rel]:
                _write(root / rel, data)
                restored.append(rel)
        for rel in extra:
            (root / rel).unlink()
            restored.append(rel)
        return TamperReport(phase=self.phase, changed=sorted(changed + extra), restored=sorted(restored))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.chmod(0o644)
    path.write_bytes(data)
