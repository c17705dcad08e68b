"""Records of the evidence gates: what a candidate changes, what the scans found, what broke, what
the benchmark generated, and the frozen harness.

They are written in the round folder before any measurement (`static.json`) or when a phase
goes wrong (`crash.json`, `tamper.json`), recorded in the ledger, and read back by REVIEW.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from perfloop.ledger.records import Record

PathKind = Literal["file", "symlink", "submodule", "binary"]


class ChangedPath(Record):
    """One path a candidate changes, resolved: both sides of a rename, a symlink's target."""

    path: str = Field(description="Path in the candidate (the old path for a deletion).")
    old_path: str | None = Field(None, description="Source path of a rename or copy.")
    status: str = Field(description="git status letter: A, M, D, R, C or T.")
    kind: PathKind
    link_target: str | None = Field(None, description="A symlink's target as written in the link.")
    resolved_target: str | None = Field(
        None, description="The target relative to the repo root; None when it leaves the repo."
    )

    def sides(self) -> list[str]:
        """Every repo path this change touches: both sides of a rename and a symlink's target."""
        out = [self.path] + ([self.old_path] if self.old_path else [])
        return out + ([self.resolved_target] if self.resolved_target else [])


class SecretFinding(Record):
    """A secret-shaped string, named only by where it is (never by its value)."""

    file: str
    line: int
    column: int
    kind: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.kind}"


class CandidateFacts(Record):
    """What the static gates judge, established from git before anything runs."""

    commit: str
    tree: str = Field(description="git tree hash of the candidate: the code it would run.")
    baseline_tree: str = Field(description="Tree of the commit it is compared with.")
    measured_before: dict[str, int] = Field(
        default_factory=dict, description="Tree hash -> round of every candidate already measured."
    )
    paths: list[ChangedPath]
    secrets: list[SecretFinding] = Field(default_factory=list)


class PhaseCrash(Record):
    """A candidate phase that failed: the round ends rejected instead of the run breaking."""

    phase: str
    error: str
    gate: str = Field("phases_completed", description="The gate that rejects it.")


class TamperReport(Record):
    """Frozen or recorded files that changed while a candidate phase ran (restored where frozen)."""

    phase: str
    changed: list[str]
    restored: list[str] = Field(default_factory=list)


class MeasuredOutputs(Record):
    """Greedy token ids per request index, from the base's measured A/A run at FREEZE."""

    source: str = Field(description="The trial result file the ids were read from.")
    outputs: dict[int, list[int]]


class OutputsCheck(Record):
    """The candidate's measured tokens against the reference."""

    passed: bool
    evidence: str


class HarnessManifest(Record):
    """Every file of the frozen copy with its hash, and the hash of the whole copy."""

    source: str = Field(description="Where the copy was taken from (the loop's installed perfloop).")
    sha256: str
    files: dict[str, str]


EVIDENCE_RECORD_MODELS: list[type[Record]] = [
    ChangedPath,
    SecretFinding,
    CandidateFacts,
    PhaseCrash,
    TamperReport,
    MeasuredOutputs,
    OutputsCheck,
    HarnessManifest,
]
