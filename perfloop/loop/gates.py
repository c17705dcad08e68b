"""REVIEW: the mechanical gates, each pass/fail with its evidence, and the round's verdict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from perfloop.ledger.records import (
    BenchRecord,
    FreezeRecord,
    GateResult,
    PatchRecord,
    ProfileRecord,
    ReviewRecord,
    ValidationRecord,
)
from perfloop.loop.secrets import find_secrets
from perfloop.loop.spec import GoalSpec
from perfloop.loop.verdicts import round_verdict
from perfloop.loop.worktrees import matches_any
from perfloop.profilers.rows import is_empty, profile_rows

GATES = [
    "frozen_hashes",
    "allowed_paths",
    "protected_code",
    "correctness",
    "output_lengths",
    "beyond_noise",
    "no_regression",
    "cites_tables",
    "no_secrets",
]


@dataclass
class ReviewInput:
    """Everything the gates read; all of it comes from records and files of the run."""

    spec: GoalSpec
    freeze: FreezeRecord
    current: FreezeRecord
    patch: PatchRecord
    validation: ValidationRecord
    revalidate: BenchRecord | None
    profile: ProfileRecord
    base_is_ancestor: bool
    round_dir: Path


def review(inp: ReviewInput) -> ReviewRecord:
    """Run every gate; ADVANCED only when all pass."""
    gates = [
        _frozen(inp),
        _allowed(inp),
        _protected(inp),
        _correctness(inp),
        _lengths(inp),
        _noise(inp),
        _regression(inp),
        _cites(inp),
        _secrets(inp),
    ]
    failed = [g.gate for g in gates if not g.passed]
    verdict, why = round_verdict(inp.spec.metric, inp.freeze.noise_band, inp.revalidate, gates)
    return ReviewRecord(gates=gates, verdict=verdict, why=why, rejected_by=failed, accepted=not failed)


def _gate(name: str, passed: bool, evidence: str) -> GateResult:
    return GateResult(gate=name, passed=passed, evidence=evidence)


def _frozen(inp: ReviewInput) -> GateResult:
    f, c = inp.freeze, inp.current
    pairs = {
        "workload": (f.workload_fingerprint, c.workload_fingerprint),
        "benchmark code": (f.bench_code_sha256, c.bench_code_sha256),
        "tolerance table": (f.tolerance_sha256, c.tolerance_sha256),
    }
    changed = [name for name, (a, b) in pairs.items() if a != b]
    measured = f.measured_workload_fingerprint
    if inp.revalidate is not None and inp.revalidate.workload_fingerprint != measured:
        changed.append("measured workload")
    if not inp.base_is_ancestor:
        changed.append(f"base commit {f.base_commit[:12]} is not an ancestor of the candidate")
    evidence = (
        "changed: " + ", ".join(changed) if changed else "workload, benchmark code, tolerances, base intact"
    )
    return _gate("frozen_hashes", not changed, evidence)


def _allowed(inp: ReviewInput) -> GateResult:
    allowed = inp.spec.target.allowed_paths
    outside = [p for p in inp.patch.files_changed if not matches_any(p, allowed)]
    if not inp.patch.files_changed:
        return _gate("allowed_paths", False, "the candidate changes no file")
    evidence = f"outside {allowed}: {outside}" if outside else f"{inp.patch.files_changed} inside {allowed}"
    return _gate("allowed_paths", not outside, evidence)


def _protected(inp: ReviewInput) -> GateResult:
    protected = inp.spec.target.protected_paths
    touched = [p for p in inp.patch.files_changed if matches_any(p, protected)]
    evidence = (
        f"touches benchmark/workload/timing code: {touched}" if touched else "no protected path touched"
    )
    return _gate("protected_code", not touched, evidence)


def _correctness(inp: ReviewInput) -> GateResult:
    v = inp.validation
    checks = ", ".join(f"{k}={'ok' if ok else 'FAIL'}" for k, ok in v.checks.items()) or "no checks reported"
    return _gate("correctness", v.passed, f"`{v.command}` exit {v.returncode}; {checks}; log {v.log_file}")


def _lengths(inp: ReviewInput) -> GateResult:
    b = inp.revalidate
    if b is None:
        return _gate("output_lengths", False, "not measured (correctness failed first)")
    ok = b.achieved_output_tokens_b == b.requested_output_tokens == b.achieved_output_tokens_a
    evidence = (
        f"requested {b.requested_output_tokens} tokens; baseline produced {b.achieved_output_tokens_a}, "
        f"candidate {b.achieved_output_tokens_b}"
    )
    return _gate("output_lengths", ok, evidence)


def _noise(inp: ReviewInput) -> GateResult:
    b = inp.revalidate
    if b is None:
        return _gate("beyond_noise", False, "not measured (correctness failed first)")
    cmp = b.metrics[inp.spec.metric]
    low = cmp.ci_low if cmp.higher_is_better else 1 / cmp.ci_high
    band = inp.freeze.noise_band
    evidence = (
        f"{inp.spec.metric} candidate/baseline median {cmp.median_ratio:.4f}, interval "
        f"[{cmp.ci_low:.4f}, {cmp.ci_high:.4f}]; must clear 1 + noise band {band:.4f}"
    )
    return _gate("beyond_noise", low > 1 + band, evidence)


def _regression(inp: ReviewInput) -> GateResult:
    b = inp.revalidate
    if b is None:
        return _gate("no_regression", False, "not measured (correctness failed first)")
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
    return _gate("no_regression", not worse, "; ".join(worse) if worse else f"within tolerance: {shown}")


def _cites(inp: ReviewInput) -> GateResult:
    """Each cited row id (`stage/table/name`) names a row of this round's profile that holds data."""
    rows = profile_rows(inp.profile.tables)
    cited = inp.patch.cited_rows
    if not cited:
        return _gate("cites_tables", False, "the patch cites no profiler table row")
    unknown = [r for r in cited if r not in rows]
    empty = [r for r in cited if r in rows and is_empty(rows[r])]
    problems = []
    if unknown:
        problems.append(f"not in this round's profile: {unknown}")
    if empty:
        problems.append(f"rows with no measured data: {empty}")
    return _gate("cites_tables", not problems, "; ".join(problems) or f"cites {cited}")


def _secrets(inp: ReviewInput) -> GateResult:
    found = find_secrets(inp.round_dir)
    return _gate(
        "no_secrets", not found, "found: " + "; ".join(found) if found else "no secret-shaped strings"
    )


def available_rows(profile: ProfileRecord) -> set[str]:
    """Every citeable row id `stage/table/name` of a profile."""
    return set(profile_rows(profile.tables))
