"""Where a run stands, read from its ledger only (no patcher, no repair): `goal status` and `goal wait`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from perfloop.ledger.records import Event, LoopState, Manifest, RoundSummary
from perfloop.ledger.store import MANIFEST, Ledger
from perfloop.loop import states as S

LOCK = ".lock"  # flock-ed by the process driving the run (Run._locked)


class RoundStatus(BaseModel):
    """One round as `goal status` shows it."""

    model_config = ConfigDict(extra="forbid")

    round: int
    status: str = Field(
        description="accepted, rejected, in progress, or `ended: STATE` (a run's last round)."
    )
    gap_ratio: float | None = Field(None, description="Target/peer median ratio of the metric.")
    gap_interval: list[float] | None = None
    gap_position: str | None = None
    candidate: str | None = Field(None, description="Candidate commit SHA.")
    rule: str | None = Field(None, description="Playbook rule, or the patcher's name.")
    verdict: str | None = None
    why: str | None = Field(None, description="The verdict's reason: the failing gate and metric.")
    rejected_by: list[str] = Field(default_factory=list)


class RunStatus(BaseModel):
    """`goal status --json`: the run's state and rounds, plus what to do next when it waits."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    root: str
    state: str
    round: int
    reason: str
    ended: bool = Field(description="A terminal state: nothing more will happen.")
    waiting_for_patch: bool
    prompt: str | None = Field(None, description="The round prompt an external agent reads.")
    worktree: str | None = Field(None, description="Where the external agent commits.")
    next_command: str | None = Field(None, description="The command that moves the run on.")
    best_commit: str
    rounds: list[RoundStatus]


def transitions(root: Path) -> list[Event]:
    """Every transition event of the run, in order."""
    return [e for e in Ledger(root).events() if e.kind == "transition"]


def current_state(root: Path) -> LoopState:
    """The state the last transition recorded."""
    return LoopState.model_validate(transitions(root)[-1].data["loop"])


def is_driven(root: Path) -> bool:
    """True while a process holds the run's drive lock (unknown counts as driven).

    Read from /proc/locks rather than by trying the lock: a probe holding it for an instant
    would make a driver starting at that instant fail.
    """
    path = root / LOCK
    if not path.exists():
        return False
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return True
    inode = path.stat().st_ino
    return any(
        len(f) > 5 and f[1] == "FLOCK" and f[5].rsplit(":", 1)[-1] == str(inode)
        for f in (line.split() for line in table.splitlines())
    )


def _round(folder: Path, state: LoopState) -> RoundStatus:
    number = int(folder.name)
    path = folder / "summary.json"
    if not path.exists():
        ended = state.state in S.TERMINAL
        return RoundStatus(round=number, status=f"ended: {state.state}" if ended else "in progress")
    s = RoundSummary.model_validate_json(path.read_text())
    return RoundStatus(
        round=number,
        status="accepted" if s.accepted else "rejected",
        gap_ratio=s.gap.median_ratio if s.gap else None,
        gap_interval=[s.gap.ci_low, s.gap.ci_high] if s.gap else None,
        gap_position=s.gap.position if s.gap else None,
        candidate=s.patch.commit if s.patch else None,
        rule=(s.patch.rule or s.patch.patcher) if s.patch else None,
        verdict=s.verdict,
        why=s.why or None,
        rejected_by=s.rejected_by,
    )


def pending_job(root: Path) -> Path | None:
    """The archive of a `manual` GPU job written and not yet imported (the loop waits on one at most)."""
    from perfloop.loop.remote import JOBS  # lazily: remote pulls in numpy, status stays light

    waiting = [
        a for a in (root / JOBS).glob("*.tgz") if not (a.with_suffix("") / "out" / "result.json").exists()
    ]
    return max(waiting, key=lambda a: a.stat().st_mtime, default=None)


def _next_step(root: Path, state: LoopState) -> tuple[str, str | None]:
    """The reason to show and the command that moves the run on (None when nothing does)."""
    from perfloop.loop.remote import MANUAL, import_command, job_instruction

    if state.state == S.WAITING_FOR_PATCH:
        return state.reason, f"perfloop goal submit {root}"
    if state.state in S.TERMINAL or is_driven(root):
        return state.reason, None
    manifest = Manifest.model_validate_json((root / MANIFEST).read_text())
    job = pending_job(root) if manifest.spec["target"].get("gpu_cmd") == MANUAL else None
    if job is not None:
        return f"waiting for a GPU job: {job_instruction(job, root)}", import_command(root)
    return state.reason, f"perfloop goal resume {root}"


def run_status(root: Path, run_id: str) -> RunStatus:
    """The status of the run folder `root` (absolute)."""
    state = current_state(root)
    waiting = state.state == S.WAITING_FOR_PATCH
    round_dir = root / "rounds" / f"{state.round:03d}"
    reason, nxt = _next_step(root, state)
    return RunStatus(
        run_id=run_id,
        root=str(root),
        state=state.state,
        round=state.round,
        reason=reason,
        ended=state.state in S.TERMINAL,
        waiting_for_patch=waiting,
        prompt=str(round_dir / "prompt.md") if waiting else None,
        worktree=str(root / "work" / f"agent-{state.round:03d}") if waiting else None,
        next_command=nxt,
        best_commit=state.best_commit,
        rounds=[_round(f, state) for f in sorted((root / "rounds").glob("[0-9][0-9][0-9]"))],
    )
