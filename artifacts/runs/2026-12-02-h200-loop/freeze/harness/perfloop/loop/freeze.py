"""FREEZE: the hashes that pin a comparison, and the A/A noise band."""

from __future__ import annotations

from perfloop.ledger.records import BenchRecord, FreezeRecord
from perfloop.loop.spec import GoalSpec


def noise_band(spec: GoalSpec, aa: BenchRecord) -> float:
    """Relative half-width of the A/A interval on the goal metric, floored by the tolerance table."""
    cmp = aa.metrics[spec.metric]
    spread = max(abs(1 - cmp.ci_low), abs(cmp.ci_high - 1))
    return max(spec.tolerances.min_noise_band, spread)


def freeze_record(
    spec: GoalSpec, base_commit: str, aa: BenchRecord | None, reference_sha: str | None, harness_sha: str
) -> FreezeRecord:
    """What FREEZE pins; `aa` None gives the hashes alone (for the reviewer's recheck).

    `harness_sha` is the hash of the frozen harness copy the evidence processes run
    (`perfloop.loop.harness`), so the recorded code hash covers the code that actually runs.
    """
    cmp = aa.metrics[spec.metric] if aa else None
    return FreezeRecord(
        workload_fingerprint=spec.workload.fingerprint(),
        measured_workload_fingerprint=aa.workload_fingerprint if aa else None,
        bench_code_sha256=harness_sha,
        tolerance_sha256=spec.tolerance_sha256(),
        base_commit=base_commit,
        noise_band=noise_band(spec, aa) if aa else 0.0,
        aa_median_ratio=cmp.median_ratio if cmp else 1.0,
        aa_ci_low=cmp.ci_low if cmp else 1.0,
        aa_ci_high=cmp.ci_high if cmp else 1.0,
        reference_outputs_sha256=reference_sha,
    )
