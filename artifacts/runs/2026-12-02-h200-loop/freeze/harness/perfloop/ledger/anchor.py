"""The ledger's anchor outside the run folder: its head hash committed in the target repo.

Anything inside the run folder can be rewritten consistently (every line re-chained, `head.json`
rewritten). So at each RECORD and on reaching a terminal state the loop commits the ledger head
(event count, SHA-256 of the last line, loop branch head) as an empty-tree commit on the ref
`refs/perfloop/ledger/<run_id>` of the target repo, each anchor the child of the one before. The
PR report prints the anchor, and `perfloop ledger verify --against-branch` checks the folder
against it: the anchored line must still hash the same, and a final anchor admits no later line.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from perfloop.ledger.records import LedgerAnchor
from perfloop.ledger.store import sha256_bytes

ANCHOR_PREFIX = "refs/perfloop/ledger/"
TITLE = "perfloop ledger anchor"
_IDENTITY = {
    "GIT_AUTHOR_NAME": "perfloop",
    "GIT_AUTHOR_EMAIL": "perfloop@localhost",
    "GIT_COMMITTER_NAME": "perfloop",
    "GIT_COMMITTER_EMAIL": "perfloop@localhost",
}


class LedgerBrokenError(Exception):
    """The ledger fails verification or no longer extends its anchor: the loop refuses to write more.

    Deliberately not a RuntimeError/OSError/ValueError, so no state handler retries it."""


def anchor_ref(run_id: str) -> str:
    """The ref holding a run's anchors."""
    return ANCHOR_PREFIX + run_id


def _git(repo: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **_IDENTITY},
        check=False,
    )


def read_anchor(repo: Path, run_id: str) -> tuple[str, LedgerAnchor] | None:
    """The newest anchor of a run (its commit and record), or None when none was written."""
    commit = _git(repo, "rev-parse", "--verify", "-q", anchor_ref(run_id)).stdout.strip()
    if not commit:
        return None
    message = _git(repo, "log", "-1", "--format=%B", commit).stdout
    return commit, LedgerAnchor.model_validate_json(message.split("\n", 2)[2])


def write_anchor(repo: Path, anchor: LedgerAnchor, lines: list[bytes]) -> str:
    """Commit `anchor` (the head of `lines`) as the new tip of the run's anchor ref; returns the anchor.

    Anchors only extend: `lines` must still hold the previous anchor's line and a final anchor is
    never followed, so a rewritten or truncated ledger cannot be laundered into a fresh anchor.
    """
    ref = anchor_ref(anchor.run_id)
    previous = read_anchor(repo, anchor.run_id)
    if previous and previous[1] == anchor:
        return previous[0]
    problem = check_anchor(lines, previous[1], ref) if previous else None
    if problem or (previous and previous[1].final):
        broken, why = problem or (ref, "is final: the run ended, nothing may be anchored after it")
        raise LedgerBrokenError(f"refusing to anchor: {broken} {why}")
    tree = _git(repo, "hash-object", "-t", "tree", "-w", "--stdin").stdout.strip()
    parents = ["-p", previous[0]] if previous else []
    message = f"{TITLE}\n\n{anchor.model_dump_json()}\n"
    made = _git(repo, "commit-tree", tree, *parents, "-F", "-", stdin=message)
    if made.returncode != 0:
        raise RuntimeError(f"cannot write the ledger anchor in {repo}: {made.stderr.strip()}")
    commit = made.stdout.strip()
    old = previous[0] if previous else ""
    moved = _git(repo, "update-ref", ref, commit, old)
    if moved.returncode != 0:
        raise RuntimeError(f"cannot move {ref} in {repo}: {moved.stderr.strip()}")
    return commit


def check_anchor(lines: list[bytes], anchor: LedgerAnchor, ref: str) -> tuple[str, str] | None:
    """(broken, problem) when the lines disagree with the anchor, else None."""
    where = f"branch anchor {ref}"
    if len(lines) < anchor.events:
        return where, f"anchors {anchor.events} events, the ledger has {len(lines)} (lines removed)"
    if sha256_bytes(lines[anchor.events - 1]) != anchor.sha256:
        return (
            f"events.jsonl line {anchor.events}",
            f"does not match {where} (the chain was rewritten up to the anchored line)",
        )
    if anchor.final and len(lines) > anchor.events:
        return (
            f"events.jsonl line {anchor.events + 1}",
            f"appended after the run ended (the final anchor {ref} holds {anchor.events} events)",
        )
    return None
