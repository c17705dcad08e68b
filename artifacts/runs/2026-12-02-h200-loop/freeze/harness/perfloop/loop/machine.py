"""The resumable state machine of one run.

Every transition appends one event carrying the whole `LoopState` and the hashes of the
files the finished state wrote; the state to run next is the last event's. A crash or kill
at any point loses only the unrecorded work of the state in progress, which `resume` redoes.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from textwrap import shorten
from typing import Any

import git

import perfloop
from perfloop.bench.ab import SequentialRule, higher_is_better
from perfloop.ledger.anchor import LedgerBrokenError, read_anchor, write_anchor
from perfloop.ledger.eval_records import AccuracyFreeze, AccuracyRun
from perfloop.ledger.evidence_records import CandidateFacts, MeasuredOutputs, PhaseCrash, TamperReport
from perfloop.ledger.records import (
    Attempt,
    BenchRecord,
    CorrectnessReport,
    FreezeRecord,
    GapRecord,
    LedgerAnchor,
    LoopState,
    Manifest,
    PatchRecord,
    ProfileRecord,
    ReviewRecord,
    RoundSummary,
    ValidationRecord,
)
from perfloop.ledger.store import MANIFEST, Ledger, atomic_write_model, sha256_file
from perfloop.ledger.verify import verify_ledger
from perfloop.loop import accuracy, children, harness
from perfloop.loop import states as S
from perfloop.loop import worktrees as wt
from perfloop.loop.candidate import FrozenGuard, candidate_facts, changed_recorded
from perfloop.loop.freeze import freeze_record
from perfloop.loop.gap import decide_gap
from perfloop.loop.gates import ReviewInput, review
from perfloop.loop.history import candidate_history
from perfloop.loop.launch import target_launch
from perfloop.loop.measurement import Backend, Side
from perfloop.loop.model_review import ModelReviewer, run_model_review
from perfloop.loop.outputs import REFERENCE as OUTPUTS_REFERENCE
from perfloop.loop.outputs import check_outputs, reference_outputs
from perfloop.loop.patchers.base import Evidence, Patcher, Proposal
from perfloop.loop.process_backend import IntegrityError
from perfloop.loop.remote import JobPending, RemoteBackend
from perfloop.loop.secrets import redact
from perfloop.loop.spec import GoalSpec
from perfloop.loop.status import LOCK
from perfloop.loop.summary import render_summary
from perfloop.loop.verdicts import verdict_line
from perfloop.profilers.rows import parse_cites

STOP_REQUEST = "STOP"
WORKLOAD = "freeze/workload.json"  # the frozen workload, for correctness commands' {workload}
CANDIDATE_PHASES = (S.VALIDATE, S.REVALIDATE)  # where a candidate's code runs: guarded, crashes reject it
FAILURES = (subprocess.SubprocessError, RuntimeError, OSError, ValueError)
ATTEMPT = "attempt.json"  # the state a driver is running; still there after a kill
BLOCK_AFTER = 3  # the same state failing this often in one round is a blocker, not bad luck
HOLD_ENV = "PERFLOOP_HOLD_AT"  # "STATE[:seconds]": pause on entering STATE (crash tests kill it there)

Notify = Callable[[str], None]


class LoopError(RuntimeError):
    """The loop cannot continue as asked (wrong state, run already active)."""


class RunBusyError(LoopError):
    """Another process holds the run's lock."""


def new_run_id() -> str:
    """A sortable, unique run id."""
    return time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 10000:04d}"


class Run:
    """One run folder: its ledger, spec, target repo and current state."""

    def __init__(
        self,
        root: Path,
        backend: Backend,
        patcher: Patcher,
        notify: Notify | None = None,
        model_reviewer: ModelReviewer | None = None,
    ) -> None:
        self.root = Path(root).resolve()  # git runs in the target repo: a relative path would miss
        self.ledger = Ledger(self.root)  # opening a run never writes: status and report only read
        self.manifest = Manifest.model_validate_json((self.root / MANIFEST).read_text())
        self.spec = GoalSpec.model_validate(self.manifest.spec)
        self.repo = git.Repo(self.manifest.target_repo)
        self.backend = backend
        self.patcher = patcher
        self.notify = notify or (lambda _msg: None)
        self.model_reviewer = model_reviewer
        self.state = self._last_state()

    # ---------- creation and persistence ----------

    @classmethod
    def create(
        cls,
        spec: GoalSpec,
        backend: Backend,
        patcher: Patcher,
        notify: Notify | None = None,
        model_reviewer: ModelReviewer | None = None,
    ) -> Run:
        """INIT: refuse a dirty target, create the loop branch, write the manifest, go to FREEZE."""
        repo = wt.open_repo(spec.target.repo)
        run_id = spec.run_id or new_run_id()
        spec = spec.model_copy(
            update={
                "run_id": run_id,
                "target": spec.target.model_copy(update={"repo": Path(repo.working_dir).resolve()}),
            }
        )
        root = (spec.artifact_root / run_id).resolve()
        if root.exists():
            raise LoopError(f"run folder {root} exists already; resume it or pick another --run-id")
        base = repo.head.commit.hexsha
        branch = f"perfloop/{run_id}"
        wt.create_branch(repo, branch, base)
        ledger = Ledger(root)
        manifest = Manifest(
            run_id=run_id,
            created=time.time(),
            perfloop_version=perfloop.__version__ if hasattr(perfloop, "__version__") else "0",
            spec=spec.model_dump(mode="json"),
            environment=backend.environment(),
            target_repo=str(Path(repo.working_dir).resolve()),
            loop_branch=branch,
            base_commit=base,
        )
        path = ledger.write_model(MANIFEST, manifest)
        state = LoopState(state=S.FREEZE, branch_head=base, best_commit=base, started=time.time())
        ledger.append("transition", S.FREEZE, data={"from": S.INIT, "loop": state.model_dump()}, files=[path])
        _anchor(ledger, manifest, state)
        return cls(root, backend, patcher, notify, model_reviewer)

    def _last_state(self) -> LoopState:
        for event in reversed(self.ledger.events()):
            if event.kind == "transition":
                return LoopState.model_validate(event.data["loop"])
        raise LoopError(f"{self.root}: no transition recorded; not a run folder")

    def _go(self, next_state: str, files: list[Path] | None = None, **changes: object) -> None:
        prev = self.state.state
        if next_state not in S.NEXT.get(S.State(prev), set()):
            raise LoopError(f"illegal transition {prev} -> {next_state}")
        self.state = self.state.model_copy(update={"state": S.State(next_state).value, **changes})
        self.ledger.append(
            "transition",
            next_state,
            round=self.state.round,
            data={"from": prev, "loop": self.state.model_dump()},
            files=files or [],
        )
        if prev == S.RECORD or next_state in S.TERMINAL:
            _anchor(self.ledger, self.manifest, self.state)
        self.notify(
            f"round {self.state.round}: {prev} -> {next_state}"
            + (f" ({self.state.reason})" if next_state in S.TERMINAL else "")
        )

    @property
    def round_dir(self) -> Path:
        return self.root / "rounds" / f"{self.state.round:03d}"

    def _rel(self, path: Path) -> str:
        return self.ledger.rel(path)

    # ---------- driving ----------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fh = open(self.root / LOCK, "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            fh.close()
            raise RunBusyError(f"run {self.manifest.run_id} is being driven by another process") from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    def drive(self) -> str:
        """Run states until a terminal state or WAITING_FOR_PATCH; returns where it stopped."""
        with self._locked(), self._children():
            self._recover()
            while True:
                self._hold(self.state.state)
                if self.state.state in S.TERMINAL or self.state.state == S.WAITING_FOR_PATCH:
                    break
                if (self.root / STOP_REQUEST).exists():
                    self._go(S.ABORTED, reason="stopped by `perfloop goal stop`")
                    break
                self._begin_attempt()
                try:
                    stop = self._run_state()
                except JobPending:
                    # Paused for a `manual` GPU job, not interrupted: `goal import` runs the state again.
                    (self.root / ATTEMPT).unlink(missing_ok=True)
                    raise
                (self.root / ATTEMPT).unlink(missing_ok=True)
                if stop:
                    break
        return self.state.state

    def _run_state(self) -> bool:
        """Run the current state once; True when its failure ended the run (BLOCKED)."""
        if self.state.state in CANDIDATE_PHASES:
            self._candidate_phase()
            return False
        try:
            self.HANDLERS[self.state.state](self)
        except FAILURES as exc:
            (self.root / ATTEMPT).unlink(missing_ok=True)
            if not self._blocked(exc):
                raise
            return True
        return False

    @contextmanager
    def _children(self) -> Iterator[None]:
        """Children's process groups on record under the run; all killed when driving ends or on SIGTERM."""
        children.set_registry(self.root)
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)) if main else None
        try:
            yield
        finally:
            children.kill_all()
            children.set_registry(None)
            if main:
                signal.signal(signal.SIGTERM, old)

    def _recover(self) -> None:
        """Writer-only, before driving: repair a torn ledger tail, kill a killed driver's children,
        record its interrupted attempt, and bring the branch anchor up to a finished run."""
        repairs = self.ledger.repair_tail()
        # Against the branch anchor too, when the run has one (runs older than anchors have none).
        anchored = read_anchor(Path(self.manifest.target_repo), self.manifest.run_id) is not None
        report = verify_ledger(self.root, against_branch=anchored)
        if not report.ok:
            raise LedgerBrokenError(
                f"ledger broken at {report.broken}: {report.problem}; refusing to continue"
            )
        for message in repairs:
            self.notify(f"ledger: {message}")
            self.state = self._last_state()
            self.ledger.append("repair", self.state.state, round=self.state.round, data={"repair": message})
        killed = children.kill_leftovers(self.root)
        attempt = self.root / ATTEMPT
        if attempt.exists():
            self._record_interrupted(Attempt.model_validate_json(attempt.read_text()), killed)
            attempt.unlink()
        if self.state.state in S.TERMINAL:
            _anchor(self.ledger, self.manifest, self.state)

    def _begin_attempt(self) -> None:
        st = self.state
        record = Attempt(state=st.state, round=st.round, pid=os.getpid(), started=time.time())
        atomic_write_model(self.root / ATTEMPT, record)

    def _record_interrupted(self, attempt: Attempt, killed: list[int]) -> None:
        """Keep what a killed attempt measured: its output folders move aside and go on record."""
        st = self.state
        base = self.root / ("freeze" if attempt.state == S.FREEZE else f"rounds/{attempt.round:03d}")
        prior = len([e for e in self.ledger.events() if e.kind == "interrupted"])
        keep = base / "interrupted" / f"{prior + 1:02d}-{attempt.state.lower()}"
        recorded = self.ledger.recorded_files()
        for folder in _OUTPUTS.get(attempt.state, []):
            for path in sorted(base.glob(folder)):
                if path.is_dir() and not any(self._rel(f) in recorded for f in path.rglob("*")):
                    keep.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(path), keep / path.name)
        files = [f for f in sorted(keep.rglob("*")) if f.is_file()] if keep.exists() else []
        trials = [f for f in files if re.fullmatch(r"trial\d+-[AB](-r\d+)?\.json", f.name)]
        data = {
            "state": attempt.state,
            "pid": attempt.pid,
            "started": attempt.started,
            "killed_process_groups": killed,
            "trial_results_kept": len(trials),
        }
        self.ledger.append("interrupted", st.state, round=st.round, data=data, files=files)
        self.notify(
            f"resume: the previous {attempt.state} attempt (pid {attempt.pid}) was interrupted; "
            f"{len(trials)} trial results kept on record, {len(killed)} leftover process groups killed"
        )

    def _candidate_phase(self) -> None:
        """Run VALIDATE or REVALIDATE with the run's records guarded; a crash rejects the candidate."""
        phase, rnd = self.state.state, self.state.round
        guard = FrozenGuard(self.ledger, phase)
        try:
            self.HANDLERS[phase](self)
        except FAILURES as exc:
            gate = "harness_integrity" if isinstance(exc, IntegrityError) else "phases_completed"
            crash = PhaseCrash(phase=phase, error=redact(f"{type(exc).__name__}: {exc}")[:4000], gate=gate)
            self.notify(f"{phase}: the candidate crashed it; rejected ({crash.error[:200]})")
            path = self.ledger.write_model(f"rounds/{rnd:03d}/crash.json", crash)
            self._go(S.REVIEW, [path])
        finally:
            tamper = guard.check()
            if tamper is not None:
                path = self.ledger.write_model(f"rounds/{rnd:03d}/tamper-{phase.lower()}.json", tamper)
                self.ledger.append(
                    "tamper", self.state.state, round=rnd, data=tamper.model_dump(), files=[path]
                )
                self.notify(f"{phase}: recorded files changed while it ran: {tamper.changed[:5]} (restored)")

    def _blocked(self, exc: Exception) -> bool:
        """Record a failed state; the same state failing BLOCK_AFTER times in a round ends the run BLOCKED."""
        st = self.state
        self.ledger.append(
            "error", st.state, round=st.round, data={"error": f"{type(exc).__name__}: {exc}"[:2000]}
        )
        failures = [
            e
            for e in self.ledger.events()
            if e.kind == "error" and e.round == st.round and e.state == st.state
        ]
        if isinstance(exc, ValueError) and not isinstance(exc, json.JSONDecodeError):
            # Bad input (a spec value, a launch spec) fails the same way on every retry.
            self._go(S.BLOCKED, reason=f"{st.state} cannot succeed on retry: {str(exc)[:300]}")
            return True
        if len(failures) < BLOCK_AFTER:
            self.notify(
                f"{st.state} failed ({len(failures)}/{BLOCK_AFTER}); `perfloop goal resume` retries it"
            )
            return False
        self._go(S.BLOCKED, reason=f"{st.state} failed {len(failures)} times: {str(exc)[:300]}")
        return True

    def stop(self) -> str:
        """Abort now when no process drives the run, else ask the driver to stop at the next transition."""
        if self.state.state in S.TERMINAL:
            return self.state.state
        try:
            with self._locked():
                self._recover()
                self._go(S.ABORTED, reason="stopped by `perfloop goal stop`")
                return S.ABORTED
        except RunBusyError:
            (self.root / STOP_REQUEST).write_text("stop\n")
            return "STOP requested"

    @staticmethod
    def _hold(state: str) -> None:
        hold = os.environ.get(HOLD_ENV, "")
        name, _, seconds = hold.partition(":")
        if name == state:
            time.sleep(float(seconds or 600))

    # ---------- helpers ----------

    def _target_side(self, name: str, commit: str, where: str) -> tuple[Side, Callable[[], None]]:
        """A worktree at `commit` and its launch; the second value removes the worktree."""
        path = self.root / "work" / where
        if path.exists():
            wt.drop_worktree(self.repo, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.repo.git.worktree("add", "--detach", str(path), commit)
        side = Side(name=name, launch=target_launch(self.spec.target, path), tree=path)
        return side, lambda: wt.drop_worktree(self.repo, path)

    def _freeze(self) -> FreezeRecord:
        return FreezeRecord.model_validate_json((self.root / "freeze" / "freeze.json").read_text())

    def _read(self, rel: str, model: type) -> object:
        return model.model_validate_json((self.round_dir / rel).read_text())

    def _store_bench(self, rel: str, record: BenchRecord, out_dir: Path) -> list[Path]:
        """Write a bench record (result paths made run-relative) and list every file it rests on."""
        files = [p for p in sorted(out_dir.rglob("*")) if p.is_file()]
        record = record.model_copy(update={"result_files": [self._rel(Path(f)) for f in record.result_files]})
        return [self.ledger.write_model(rel, record), *files]

    # ---------- states ----------

    def _do_freeze(self) -> None:
        out = self.root / "freeze"
        frozen = harness.snapshot(self.root)
        files = [self.ledger.write_model(harness.MANIFEST, frozen)]
        files.append(self.ledger.write_model(WORKLOAD, self.spec.workload))
        side, done = self._target_side("base", self.manifest.base_commit, "base")
        reference_sha = None
        try:
            if self.spec.target.reference_command:
                ref = out / "reference.json"
                out.mkdir(parents=True, exist_ok=True)
                code, _ = self._shell(
                    self.spec.target.reference_command, side.tree, out / "reference.log", ref
                )
                if code != 0:
                    raise RuntimeError(f"target.reference_command exited {code}; see freeze/reference.log")
                reference_sha = sha256_file(ref)
                files += [ref, out / "reference.log"]
            if self.spec.accuracy is not None:
                frozen_acc = self._freeze_accuracy(side, files)
                if (broken := accuracy.baseline_broken(frozen_acc)) is not None:
                    self._go(S.BLOCKED, files, reason=broken)
                    return
            self.notify("FREEZE: A/A run of the base to set the noise band")
            margin = self._margin()
            until = self._rule(margin=margin) if margin else None
            aa = self.backend.ab(side, side, self.spec, self.spec.measure.aa_trials, "aa", out / "aa", until)
        finally:
            done()
        record = freeze_record(self.spec, self.manifest.base_commit, aa, reference_sha, frozen.sha256)
        outputs = reference_outputs(aa, self.root)
        if outputs is not None:
            files.append(self.ledger.write_model(OUTPUTS_REFERENCE, outputs))
        files += self._store_bench("freeze/aa.json", aa, out / "aa")
        files.append(self.ledger.write_model("freeze/freeze.json", record))
        self.notify(f"FREEZE: noise band ±{record.noise_band:.2%} after {aa.trials} A/A pairs")
        if margin is not None and record.noise_band > margin:
            self._go(S.UNPROVABLE, files, reason=unprovable_reason(record.noise_band, margin, aa))
            return
        self._go(S.BENCH, files, round=1)

    def _evaluate(self, side: Side, folder: Path) -> tuple[AccuracyRun, list[Path]]:
        """The accuracy phase of `side` (served from its worktree); its server log goes on record."""
        assert self.spec.accuracy is not None
        self.notify(f"{self.state.state}: accuracy eval of {side.name} (task set + logprob consistency)")
        out = folder / "accuracy"
        run = accuracy.evaluate(side, self.spec.accuracy, self.root, out, self.spec.measure.torch_threads)
        self.notify(
            f"{self.state.state}: {side.name} accuracy {run.task.accuracy:.3f} on {run.task.items} items "
            f"({run.launch_s + run.task_s + run.consistency_s:.0f}s)"
        )
        return run, [p for p in sorted(out.rglob("*")) if p.is_file()]

    def _freeze_accuracy(self, side: Side, files: list[Path]) -> AccuracyFreeze:
        """FREEZE: the baseline's accuracy phase and the bars it sets (appended to `files`)."""
        assert self.spec.accuracy is not None
        if isinstance(self.backend, RemoteBackend):
            # A ValueError: the same on every retry, so the run ends BLOCKED with this reason at once.
            raise ValueError("accuracy: the gate serves targets on the loop's host, not through a GPU runner")
        run, logs = self._evaluate(side, self.root / "freeze")
        frozen = accuracy.freeze_bars(self.spec.accuracy, run)
        files += [*logs, self.ledger.write_model(accuracy.FREEZE_FILE, frozen)]
        return frozen

    def _margin(self) -> float | None:
        """The lead the objective asks for, when it asks for one (the noise band must be below it)."""
        obj = self.spec.objective
        return obj.margin if obj.kind == "beat_peer" and obj.margin > 0 else None

    def _rule(self, bar: float | None = None, margin: float | None = None) -> SequentialRule:
        """Sequential trials on the goal metric: until `bar` (oriented: > 1 is better) is cleared
        either way, or (A/A) until the band is known to be below or above `margin`."""
        m = self.spec.metric
        budget = max(self.spec.measure.max_trials, self.spec.measure.trials, self.spec.measure.aa_trials)
        bars = [] if bar is None else [bar if higher_is_better(m) else 1 / bar]
        return SequentialRule(metric=m, max_trials=budget, bars=bars, margin=margin)

    def _do_bench(self) -> None:
        st = self.state
        if st.round > self.spec.budgets.max_rounds:
            self._go(S.BUDGET_LIMITED, reason=f"max_rounds {self.spec.budgets.max_rounds} reached")
            return
        if time.time() - st.started > self.spec.budgets.max_wall_s:
            self._go(S.BUDGET_LIMITED, reason=f"max_wall_s {self.spec.budgets.max_wall_s:.0f} reached")
            return
        target, done = self._target_side("target", st.best_commit, "best")
        files: list[Path] = []
        try:
            for i, peer in enumerate(self._peers()):
                out = self.round_dir / f"bench-{i}"
                bar = 1 + (self._margin() or self.spec.stop.gap_threshold)
                record = self.backend.ab(
                    peer, target, self.spec, self.spec.measure.trials, f"vs-{peer.name}", out, self._rule(bar)
                )
                files += self._store_bench(f"rounds/{st.round:03d}/bench-{i}.json", record, out)
        finally:
            done()
        self._go(S.GAP, files)

    def _peers(self) -> list[Side]:
        if self.spec.peers:
            return [Side(name=p.name, launch=p.launch) for p in self.spec.peers]
        base = target_launch_at(self, self.manifest.base_commit)
        return [Side(name="base", launch=base)]

    def _do_gap(self) -> None:
        benches = sorted(self.round_dir.glob("bench-*.json"))
        gaps = [decide_gap(self.spec, BenchRecord.model_validate_json(p.read_text())) for p in benches]
        # The best peer is the one the target compares worst against.
        gap = min(gaps, key=lambda g: g.median_ratio)
        path = self.ledger.write_model(f"rounds/{self.state.round:03d}/gap.json", gap)
        self.notify(
            f"GAP: target/{gap.peer} {gap.metric} x{gap.median_ratio:.3f} "
            f"[{gap.ci_low:.3f}, {gap.ci_high:.3f}] -> {gap.position}"
        )
        if gap.objective_met:
            self._go(S.COMPLETE, [path], reason=f"objective met: {gap.reason}")
        else:
            self._go(S.PROFILE, [path])

    def _do_profile(self) -> None:
        st = self.state
        side, done = self._target_side("target", st.best_commit, "profile")
        try:
            record = self.backend.profile(side, self.spec, self.round_dir / "profile")
        finally:
            done()
        out = self.round_dir / "profile"
        record = record.model_copy(
            update={"trace": self._rel(Path(record.trace)) if out.exists() else record.trace}
        )
        files = [self.ledger.write_model(f"rounds/{st.round:03d}/profile.json", record)]
        files += [p for p in sorted(out.rglob("*")) if p.is_file()]
        if st.research_next and self.spec.peers:
            # Research round: the peer's own tables, to compare what it does differently.
            peer = self.spec.peers[0]
            peer_out = self.round_dir / "peer-profile"
            peer_record = self.backend.profile(Side(name=peer.name, launch=peer.launch), self.spec, peer_out)
            files.append(self.ledger.write_model(f"rounds/{st.round:03d}/peer-profile.json", peer_record))
            files += [p for p in sorted(peer_out.rglob("*")) if p.is_file()]
        self._go(S.PATCH, files)

    def evidence(self) -> Evidence:
        """The round's evidence for the patcher."""
        st = self.state
        return Evidence(
            spec=self.spec,
            run_id=self.manifest.run_id,
            round=st.round,
            gap=GapRecord.model_validate_json((self.round_dir / "gap.json").read_text()),
            profile=ProfileRecord.model_validate_json((self.round_dir / "profile.json").read_text()),
            freeze=self._freeze(),
            parent_commit=st.best_commit,
            repo=self.repo,
            round_dir=self.round_dir,
            scratch=self.root / "work",
            research=st.research_next,
            tried_rules=list(st.tried_rules),
            history=candidate_history(self.root, st.round, self.spec.metric),
        )

    def _do_patch(self) -> None:
        proposal = self.patcher.propose(self.evidence())
        rel = f"rounds/{self.state.round:03d}"
        if proposal.waiting:
            prompt = self.round_dir / "prompt.md"
            self._go(S.WAITING_FOR_PATCH, [prompt], reason=proposal.reason)
            return
        if proposal.commit is None:
            record = PatchRecord(patcher=self.patcher.name, proposed=False, reason=proposal.reason)
            path = self.ledger.write_model(f"{rel}/patch.json", record)
            end = S.BUDGET_LIMITED if proposal.budget_limited else S.NO_GO
            self._go(end, [path, *proposal.files], reason=f"no proposal: {proposal.reason}")
            return
        self._record_candidate(proposal, self.patcher.name)

    def submit(self, commit: str | None, rationale: str, cites: list[str]) -> None:
        """`goal submit`: take an external agent's commit and continue at VALIDATE."""
        if self.state.state != S.WAITING_FOR_PATCH:
            raise LoopError(f"run is in {self.state.state}, not WAITING_FOR_PATCH; nothing to submit")
        with self._locked():
            self._recover()
            agent_tree = self.root / "work" / f"agent-{self.state.round:03d}"
            rev = commit or (git.Repo(agent_tree).head.commit.hexsha if agent_tree.exists() else None)
            if rev is None:
                raise LoopError("--commit: give the candidate SHA (no agent worktree to take it from)")
            sha = wt.resolve_commit(self.repo, rev)
            message = self.repo.commit(sha).message
            cited = cites or parse_cites(_trailer(message, "Cites"))
            proposal = Proposal(
                commit=sha,
                reason="external agent commit",
                rationale=rationale or message.strip(),
                cited_rows=cited,
            )
            self._record_candidate(proposal, "external")
            if agent_tree.exists():
                wt.drop_worktree(self.repo, agent_tree)

    def _record_candidate(self, proposal: Proposal, patcher: str) -> None:
        st = self.state
        rel = f"rounds/{st.round:03d}"
        sha = proposal.commit or ""
        parent = self.repo.commit(sha).parents[0].hexsha if self.repo.commit(sha).parents else st.best_commit
        diff = self.ledger.write_text(
            f"{rel}/candidate.diff", redact(wt.diff_text(self.repo, st.best_commit, sha))
        )
        facts = candidate_facts(self.repo, st.best_commit, sha, self.root, st.round)
        record = PatchRecord(
            patcher=patcher,
            proposed=True,
            reason=proposal.reason,
            commit=sha,
            parent=parent,
            rule=proposal.rule,
            rationale=proposal.rationale,
            cited_rows=proposal.cited_rows,
            files_changed=wt.changed_files(self.repo, st.best_commit, sha),
            diff_file=self._rel(diff),
        )
        path = self.ledger.write_model(f"{rel}/patch.json", record)
        static = self.ledger.write_model(f"{rel}/static.json", facts)
        why = shorten(proposal.rationale, 100, placeholder=" …")  # cut between words
        self.notify(f"PATCH: candidate {sha[:12]} ({proposal.rule or patcher}): {why}")
        tried = [*st.tried_rules, proposal.rule] if proposal.rule else list(st.tried_rules)
        self._go(S.VALIDATE, [path, static, diff, *proposal.files], pending_commit=sha, tried_rules=tried)

    def _do_validate(self) -> None:
        st = self.state
        rel = f"rounds/{st.round:03d}"
        static = review(self._review_input(), static_only=True)
        if not static.accepted:
            # Static gates first: nothing of a candidate they reject is run or measured.
            self.notify(f"VALIDATE: not run, rejected by {static.rejected_by} before any measurement")
            self._go(S.REVIEW)
            return
        side, done = self._target_side("candidate", st.pending_commit or "", "candidate")
        log = self.round_dir / "validation.log"
        command = self.spec.target.correctness
        files: list[Path] = []
        try:
            code, out = self._shell(command, side.tree, log)
            report = _last_json(out)
            record = ValidationRecord(
                command=command,
                returncode=code,
                passed=code == 0 and (report.passed if report else True),
                checks=report.checks if report else {},
                log_file=self._rel(log),
            )
            self.notify(f"VALIDATE: {'passed' if record.passed else 'FAILED'} {record.checks}")
            if record.passed and self.spec.accuracy is not None:
                run, files = self._evaluate(side, self.round_dir)
                files.append(self.ledger.write_model(f"{rel}/accuracy.json", run))
        finally:
            done()
        self._go(S.REVALIDATE, [self.ledger.write_model(f"{rel}/validation.json", record), log, *files])

    def _shell(
        self, command: str, tree: Path | None, log: Path, writes: Path | None = None
    ) -> tuple[int, str]:
        """A correctness/reference command in `tree`, in the frozen-harness environment of measurement."""
        ref = self.root / "freeze" / "reference.json"
        workload = self.root / WORKLOAD
        cmd = (
            command.replace("{reference}", shlex.quote(str(ref)))
            .replace("{workload}", shlex.quote(str(workload)))
            .replace("{worktree}", str(tree))
        )
        env = harness.child_env(self.root if (self.root / harness.MANIFEST).exists() else None, tree)
        env |= harness.threads_env(self.spec.measure.torch_threads)
        on_gpu = self.spec.target.correctness_on_gpu
        if isinstance(self.backend, RemoteBackend) and on_gpu and tree is not None:
            code, stdout, stderr = self.backend.shell(cmd, tree, self.root, writes, env)
        else:
            proc = children.run(cmd, tree, timeout=1800, env=env)
            code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        text = f"$ {cmd}\n[exit {code}]\n{stdout}{stderr}"
        self.ledger.write_text(self._rel(log), redact(text))
        return code, stdout

    def _do_revalidate(self) -> None:
        st = self.state
        validation = self._read("validation.json", ValidationRecord)
        if not validation.passed:
            self.notify("REVALIDATE: skipped, correctness failed")
            self._go(S.REVIEW)
            return
        base, done_a = self._target_side("best", st.best_commit, "best")
        cand, done_b = self._target_side("candidate", st.pending_commit or "", "candidate")
        try:
            bar = 1 + self._freeze().noise_band
            out = self.round_dir / "revalidate"
            record = self.backend.ab(
                base, cand, self.spec, self.spec.measure.trials, "revalidate", out, self._rule(bar)
            )
        finally:
            done_a()
            done_b()
        files = self._store_bench(
            f"rounds/{st.round:03d}/revalidate.json", record, self.round_dir / "revalidate"
        )
        cmp = record.metrics[self.spec.metric]
        self.notify(
            f"REVALIDATE: candidate/best {self.spec.metric} x{cmp.median_ratio:.3f} "
            f"[{cmp.ci_low:.3f}, {cmp.ci_high:.3f}]"
        )
        self._go(S.REVIEW, files)

    def _review_input(self) -> ReviewInput:
        """The gates' input, from the round's records (each verified against its recorded hash first)."""
        st = self.state
        changed = changed_recorded(self.ledger)
        tampered = [
            TamperReport.model_validate_json(p.read_text())
            for p in sorted(self.round_dir.glob("tamper-*.json"))
        ]
        if changed:
            tampered.append(TamperReport(phase="REVIEW", changed=changed))
        revalidate = self._optional("revalidate.json", BenchRecord)
        reference = self.root / OUTPUTS_REFERENCE
        outputs = None
        if revalidate is not None and reference.exists():
            ref = MeasuredOutputs.model_validate_json(reference.read_text())
            outputs = check_outputs(ref, revalidate, self.root)
        return ReviewInput(
            spec=self.spec,
            freeze=self._freeze(),
            current=freeze_record(
                self.spec, self.manifest.base_commit, None, None, harness.current_sha256(self.root)
            ),
            patch=self._read("patch.json", PatchRecord),
            facts=self._read("static.json", CandidateFacts),
            validation=self._optional("validation.json", ValidationRecord),
            revalidate=revalidate,
            profile=self._read("profile.json", ProfileRecord),
            base_is_ancestor=wt.is_ancestor(self.repo, self.manifest.base_commit, st.pending_commit or ""),
            round_dir=self.round_dir,
            crash=self._optional("crash.json", PhaseCrash),
            tampered=tampered,
            outputs=outputs,
            accuracy_freeze=_optional(self.root / accuracy.FREEZE_FILE, AccuracyFreeze),
            accuracy=self._optional("accuracy.json", AccuracyRun),
        )

    def _optional(self, rel: str, model: type) -> Any:
        return _optional(self.round_dir / rel, model)

    def _do_review(self) -> None:
        st = self.state
        inp = self._review_input()
        # The optional model review only adds findings to candidates the gates accepted.
        record, extra = run_model_review(self.model_reviewer, inp, review(inp))
        path = self.ledger.write_model(f"rounds/{st.round:03d}/review.json", record)
        self.notify(f"REVIEW: {verdict_line(record)}")
        self._go(S.RECORD, [path, *extra])

    def _do_record(self) -> None:
        st = self.state
        rec: ReviewRecord = self._read("review.json", ReviewRecord)
        patch: PatchRecord = self._read("patch.json", PatchRecord)
        gap: GapRecord = self._read("gap.json", GapRecord)
        if rec.accepted:
            wt.move_branch(self.repo, self.manifest.loop_branch, st.pending_commit or "")
            best, nonadv = st.pending_commit or st.best_commit, 0
        else:
            best, nonadv = st.best_commit, st.nonadvancing + 1
        summary = RoundSummary(
            round=st.round,
            gap=gap,
            patch=patch,
            verdict=rec.verdict,
            why=rec.why,
            accepted=rec.accepted,
            rejected_by=rec.rejected_by,
            branch_head=best,
            research=st.research_next,
            outcome="accepted: loop branch advanced" if rec.accepted else "rejected: kept in the ledger only",
        )
        rel = f"rounds/{st.round:03d}"
        files = [self.ledger.write_model(f"{rel}/summary.json", summary)]
        files.append(self.ledger.write_text(f"{rel}/summary.md", render_summary(summary, rec)))
        if nonadv >= self.spec.stop.stall_after:
            self._go(
                S.NO_PROGRESS,
                files,
                best_commit=best,
                branch_head=best,
                nonadvancing=nonadv,
                pending_commit=None,
                reason=f"{nonadv} non-advancing rounds in a row",
            )
            return
        self._go(
            S.BENCH,
            files,
            round=st.round + 1,
            best_commit=best,
            branch_head=best,
            nonadvancing=nonadv,
            pending_commit=None,
            research_next=nonadv >= self.spec.stop.research_after,
        )

    HANDLERS: dict[str, Callable[[Run], None]] = {
        S.FREEZE: _do_freeze,
        S.BENCH: _do_bench,
        S.GAP: _do_gap,
        S.PROFILE: _do_profile,
        S.PATCH: _do_patch,
        S.VALIDATE: _do_validate,
        S.REVALIDATE: _do_revalidate,
        S.REVIEW: _do_review,
        S.RECORD: _do_record,
    }


# Output folders of the measuring states, relative to the freeze or round folder.
_OUTPUTS = {
    S.FREEZE: ["aa", "accuracy"],
    S.BENCH: ["bench-*"],
    S.PROFILE: ["profile", "peer-profile"],
    S.REVALIDATE: ["revalidate"],
}


def unprovable_reason(band: float, margin: float, aa: BenchRecord) -> str:
    """The UNPROVABLE verdict line, with what to change."""
    return (
        f"UNPROVABLE on this host: band ±{band:.1%} > margin {margin:.1%} "
        f"({aa.trials} A/A pairs, stopped: {aa.stop_reason}). Advice: measure on a quiet or dedicated "
        "host (no other load, pinned cores), lengthen trials (measure.trial_seconds), raise "
        "measure.max_trials, or ask for a larger objective margin"
    )


def _anchor(ledger: Ledger, manifest: Manifest, state: LoopState) -> None:
    """Commit the ledger head to the run's anchor ref in the target repo (final once the run ended)."""
    head = ledger.head() or {}
    anchor = LedgerAnchor(
        run_id=manifest.run_id,
        events=int(head["events"]),
        sha256=str(head["sha256"]),
        state=state.state,
        round=state.round,
        branch_head=state.branch_head,
        final=state.state in S.TERMINAL,
    )
    write_anchor(Path(manifest.target_repo), anchor, ledger.raw_lines())


def target_launch_at(run: Run, commit: str) -> str:
    """The launch spec of the target at a commit, read without a worktree (for the base as peer)."""
    side, done = run._target_side("base", commit, "base-peer")
    done()
    return side.launch


def _optional(path: Path, model: type) -> Any:
    return model.model_validate_json(path.read_text()) if path.exists() else None


def _trailer(message: str, key: str) -> str:
    return " ".join(line.split(":", 1)[1] for line in message.splitlines() if line.startswith(f"{key}:"))


def _last_json(stdout: str) -> CorrectnessReport | None:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return CorrectnessReport.model_validate_json(line)
            except ValueError:
                return None
    return None
