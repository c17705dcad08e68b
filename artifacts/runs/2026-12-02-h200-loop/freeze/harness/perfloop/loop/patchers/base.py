"""The `Patcher` interface: the round's evidence in, one candidate commit (or a reason) out.

A patcher never measures, validates or reviews; the loop does that to whatever it returns.
Implementations: `playbook` (deterministic rules, offline), `external` (a coding agent works
from a rendered prompt and hands back a commit with `perfloop goal submit`), and `anthropic`
(a tool-using model confined to the candidate worktree, with turn and spend caps).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import git

from perfloop.ledger.records import FreezeRecord, GapRecord, ProfileRecord
from perfloop.loop.history import CandidateHistory
from perfloop.loop.spec import GoalSpec


@dataclass
class Evidence:
    """What a patcher may read: the goal, the gap with its interval, the tables, past attempts."""

    spec: GoalSpec
    run_id: str
    round: int
    gap: GapRecord
    profile: ProfileRecord
    freeze: FreezeRecord
    parent_commit: str
    repo: git.Repo
    round_dir: Path
    scratch: Path
    research: bool = False
    tried_rules: list[str] = field(default_factory=list)
    history: list[CandidateHistory] = field(default_factory=list)


@dataclass
class Proposal:
    """A patcher's answer.

    `commit` set: a candidate whose parent is `Evidence.parent_commit`, with the rationale and
    the cited table rows (row ids `stage/table/name`). `commit` None and `waiting` False: no
    proposal, `reason` says why (the loop stops NO_GO, or BUDGET_LIMITED when
    `budget_limited`: a spend or turn cap ended the patcher). `waiting` True: an external agent
    is working; the loop parks in WAITING_FOR_PATCH until `perfloop goal submit`. `files`:
    records the patcher wrote into the round folder (usage, transcript) for the ledger.
    """

    commit: str | None
    reason: str
    rationale: str = ""
    cited_rows: list[str] = field(default_factory=list)
    rule: str | None = None
    waiting: bool = False
    budget_limited: bool = False
    files: list[Path] = field(default_factory=list)


class Patcher(ABC):
    """Proposes at most one candidate per round."""

    name: str

    @abstractmethod
    def propose(self, evidence: Evidence) -> Proposal:
        """Return a candidate commit with its rationale and cited rows, a reason for none, or waiting."""
