"""REVIEW: the mechanical gates, each pass/fail with its evidence, and the round's verdict.

Gates live in one registry (`GATES`, name -> gate): adding a gate is one `@gate("name")`
function. Static gates judge what git and the patch record say (paths, citations,
secrets, the candidate's tree) and run before any measurement; the rest read what the
candidate phases measured. A gate returns `(passed, evidence)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from perfloop.ledger.eval_records import AccuracyFreeze, AccuracyRun
from perfloop.ledger.evidence_records import (
    CandidateFacts,
    ChangedPath,
    OutputsCheck,
    PhaseCrash,
    TamperReport,
)
from perfloop.ledger.records import (
    BenchRecord,
    FreezeRecord,
    GateResult,
    PatchRecord,
    ProfileRecord,
    ReviewRecord,
    ValidationRecord,
)
from perfloop.loop.accuracy import judge
from perfloop.loop.secrets import find_secrets
from perfloop.loop.spec import GoalSpec
from perfloop.loop.verdicts import round_verdict
from perfloop.loop.worktrees import matches_any
from perfloop.profilers.rows import is_empty, profile_rows


@dataclass
class ReviewInput:
    """Everything the gates read; all of it comes from records and files of the run."""

    spec: GoalSpec
    freeze: FreezeRecord
    current: FreezeRecord
    patch: PatchRecord
    facts: CandidateFacts
    validation: ValidationRecord | None
    revalidate: BenchRecord | None
    profile: ProfileRecord
    base_is_ancestor: bool
    round_dir: Path
    crash: PhaseCrash | None = None
    tampered: list[TamperReport] = field(default_factory=list)
    outputs: OutputsCheck | None = None
    accuracy_freeze: AccuracyFreeze | None = None
    accuracy: AccuracyRun | None = None


GateCheck = Callable[[ReviewInput], "tuple[bool, str] | GateResult"]


@dataclass(frozen=True)
class Gate:
    """One registered gate; `static` gates run before any measurement."""

    name: str
    check: GateCheck
    static: bool


GATES: dict[str, Gate] = {}


def gate(name: str, static: bool = False) -> Callable[[GateCheck], GateCheck]:
    """Register a gate under `name` (the only place the name is written)."""

    def register(check: GateCheck) -> GateCheck:
        GATES[name] = Gate(name, check, static)
        return check

    return register


def run_gate(g: Gate, inp: ReviewInput) -> GateResult:
    """One gate's result, named by the registry."""
    out = g.check(inp)
    if isinstance(out, GateResult):
        return out
    passed, evidence = out
    return GateResult(gate=g.name, passed=passed, evidence=evidence)


def review(inp: ReviewInput, static_only: bool = False) -> ReviewRecord:
    """Run the static gates, then (unless they rejected, or `static_only`) every other gate.

    A candidate the static gates reject was never run, so its record holds only their results.
    """
    gates = [run_gate(g, inp) for g in GATES.values() if g.static]
    if not static_only and all(g.passed for g in gates):
        gates += [run_gate(g, inp) for g in GATES.values() if not g.static]
    failed = [g.gate for g in gates if not g.passed]
    verdict, why = round_verdict(inp.spec.metric, inp.freeze.noise_band, inp.revalidate, gates)
    return ReviewRecord(gates=gates, verdict=verdict, why=why, rejected_by=failed, accepted=not failed)


def _gate(name: str, passed: bool, evidence: str) -> GateResult:
    return GateResult(gate=name, passed=passed, evidence=evidence)


def _skipped(inp: ReviewInput) -> str:
    """Why a measured gate has nothing to judge."""
    if inp.crash is not None:
        return f"not measured: {inp.crash.phase} crashed"
    return "not measured (correctness failed first)"


# ---------- static gates: from git and the patch record, before anything runs ----------


@gate("distinct_code", static=True)
def _distinct(inp: ReviewInput) -> tuple[bool, str]:
    f = inp.facts
    if f.tree == f.baseline_tree:
        return False, f"candidate tree {f.tree[:12]} is the baseline's: both sides would run the same code"
    if f.tree in f.measured_before:
        return False, f"tree {f.tree[:12]} was already measured in round {f.measured_before[f.tree]}"
    return True, f"new tree {f.tree[:12]} (baseline {f.baseline_tree[:12]})"


@gate("allowed_paths", static=True)
def _allowed(inp: ReviewInput) -> tuple[bool, str]:
    allowed = inp.spec.target.allowed_paths
    paths = inp.facts.paths
    if not paths:
        return False, "the candidate changes no file"
    bad = [f"{p.path} (symlink to {p.link_target!r} leaves the repo)" for p in paths if _escapes(p)]
    bad += [f"{p.path} (submodule)" for p in paths if p.kind == "submodule"]
    bad += sorted({s for p in paths for s in p.sides() if not matches_any(s, allowed)})
    touched = sorted({s for p in paths for s in p.sides()})
    return not bad, f"outside {allowed}: {bad}" if bad else f"{touched} inside {allowed}"


def _escapes(p: ChangedPath) -> bool:
    return p.kind == "symlink" and p.resolved_target is None


@gate("protected_code", static=True)
def _protected(inp: ReviewInput) -> tuple[bool, str]:
    protected = inp.spec.target.protected_paths
    touched = sorted({s for p in inp.facts.paths for s in p.sides() if matches_any(s, protected)})
    if touched:
        return False, f"touches benchmark/workload/timing code (renames, symlink targets included): {touched}"
    return True, "no protected path touched (renames and symlink targets resolved)"


@gate("cites_tables", static=True)
def _cites(inp: ReviewInput) -> tuple[bool, str]:
    """Each cited row id (`stage/table/name`) names a row of this round's profile that holds data."""
    rows = profile_rows(inp.profile.tables)
    cited = inp.patch.cited_rows
    if not cited:
        return False, "the patch cites no profiler table row"
    unknown = [r for r in cited if r not in rows]
    empty = [r for r in cited if r in rows and is_empty(rows[r])]
    problems = []
    if unknown:
        problems.append(f"not in this round's profile: {unknown}")
    if empty:
        problems.append(f"rows with no measured data: {empty}")
    return not problems, "; ".join(problems) or f"cites {cited}"


@gate("no_secrets", static=True)
def _secrets(inp: ReviewInput) -> tuple[bool, str]:
    # The candidate's added files (binary included), and every artifact and log of the round.
    found = [*inp.facts.secrets, *find_secrets(inp.round_dir)]
    shown = "; ".join(str(f) for f in found)
    return (
        not found,
        f"found (redacted in recorded artifacts): {shown}" if found else "no secret-shaped strings",
    )


# ---------- gates on what the candidate phases did ----------


def _no_crash(inp: ReviewInput, name: str, ok: str) -> tuple[bool, str]:
    """Fails when a candidate phase crashed and `crash.json` names gate `name` as the one rejecting it."""
    crash = inp.crash
    if crash is not None and crash.gate == name:
        return False, f"{crash.phase}: {crash.error[:500]}"
    return True, ok


@gate("phases_completed")
def _phases(inp: ReviewInput) -> tuple[bool, str]:
    return _no_crash(inp, "phases_completed", "no candidate phase crashed")


@gate("harness_integrity")
def _integrity(inp: ReviewInput) -> tuple[bool, str]:
    return _no_crash(inp, "harness_integrity", "the measured code left the harness's clocks alone")


@gate("frozen_hashes")
def _frozen(inp: ReviewInput) -> tuple[bool, str]:
    f, c = inp.freeze, inp.current
    pairs = {
        "workload": (f.workload_fingerprint, c.workload_fingerprint),
        "harness code": (f.bench_code_sha256, c.bench_code_sha256),
        "tolerance table": (f.tolerance_sha256, c.tolerance_sha256),
    }
    changed = [name for name, (a, b) in pairs.items() if a != b]
    measured = f.measured_workload_fingerprint
    if inp.revalidate is not None and inp.revalidate.workload_fingerprint != measured:
        changed.append("measured workload")
    if not inp.base_is_ancestor:
        changed.append(f"base commit {f.base_commit[:12]} is not an ancestor of the candidate")
    changed += [f"{t.phase} changed {', '.join(t.changed)}" for t in inp.tampered]
    intact = "workload, harness code, tolerances, base, recorded files intact"
    return not changed, "changed: " + "; ".join(changed) if changed else intact


@gate("correctness")
def _correctness(inp: ReviewInput) -> tuple[bool, str]:
    v = inp.validation
    if v is None:
        return False, f"not run: {inp.crash.phase} crashed" if inp.crash else "not run"
    checks = ", ".join(f"{k}={'ok' if ok else 'FAIL'}" for k, ok in v.checks.items()) or "no checks reported"
    return v.passed, f"`{v.command}` exit {v.returncode}; {checks}; log {v.log_file}"


@gate("output_lengths")
def _lengths(inp: ReviewInput) -> tuple[bool, str]:
    b = inp.revalidate
    if b is None:
        return False, _skipped(inp)
    ok = b.achieved_output_tokens_b == b.requested_output_tokens == b.achieved_output_tokens_a
    return ok, (
        f"requested {b.requested_output_tokens} tokens; baseline produced {b.achieved_output_tokens_a}, "
        f"candidate {b.achieved_output_tokens_b}"
    )


@gate("measured_outputs")
def _outputs(inp: ReviewInput) -> tuple[bool, str]:
    if inp.revalidate is None:
        return False, _skipped(inp)
    if inp.outputs is None:
        return True, "not checkable: the launch returns no token ids (only lengths are checked)"
    return inp.outputs.passed, inp.outputs.evidence


@gate("beyond_noise")
def _noise(inp: ReviewInput) -> tuple[bool, str]:
    b = inp.revalidate
    if b is None:
        return False, _skipped(inp)
    cmp = b.metrics[inp.spec.metric]
    low = cmp.ci_low if cmp.higher_is_better else 1 / cmp.ci_high
    band = inp.freeze.noise_band
    return low > 1 + band, (
        f"{inp.spec.metric} candidate/baseline median {cmp.median_ratio:.4f}, interval "
        f"[{cmp.ci_low:.4f}, {cmp.ci_high:.4f}]; must clear 1 + noise band {band:.4f}"
    )


@gate("no_regression")
def _regression(inp: ReviewInput) -> tuple[bool, str]:
    b = inp.revalidate
    if b is None:
        return False, _skipped(inp)
    worse = []
    for metric, tol in inp.spec.tolerances.other_metrics.items():
        cmp = b.metrics.get(metric)
        if cmp is None:
            worse.append(f"{metric} not measured")
            continue
        # Lower is better for these metrics: ratio > 1 + tol is a regression.
        ratio = cmp.median_ratio if not cmp.higher_is_better else 1 / cmp.median_ratio
        if ratio > 1 + tol:
            worse.append(f"{metric} x{ratio:.3f} > {1 + tol:.3f}")
    shown = ", ".join(
        f"{m} x{b.metrics[m].median_ratio:.3f}" for m in inp.spec.tolerances.other_metrics if m in b.metrics
    )
    return not worse, "; ".join(worse) if worse else f"within tolerance: {shown}"


@gate("accuracy")
def _accuracy(inp: ReviewInput) -> tuple[bool, str]:
    """Paired task accuracy and logprob consistency against the baseline frozen at FREEZE."""
    if inp.spec.accuracy is None:
        return True, "not checked: the spec has no accuracy block"
    if inp.accuracy_freeze is None:
        return False, "no accuracy baseline was frozen at FREEZE"
    if inp.accuracy is None:
        return False, _skipped(inp)
    verdict = judge(inp.accuracy_freeze, inp.accuracy)
    return verdict.passed, verdict.evidence


def available_rows(profile: ProfileRecord) -> set[str]:
    """Every citeable row id `stage/table/name` of a profile."""
    return set(profile_rows(profile.tables))
