"""FREEZE: the hashes that pin a comparison, and the A/A noise band."""

from __future__ import annotations

import hashlib
from pathlib import Path

import perfloop.bench
from perfloop.ledger.records import BenchRecord, FreezeRecord
from perfloop.loop.spec import GoalSpec


def bench_code_sha256() -> str:
    """Hash of the benchmark harness source (every .py under perfloop/bench, by relative path)."""
    root = Path(perfloop.bench.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def noise_band(spec: GoalSpec, aa: BenchRecord) -> float:
    """Relative half-width of the A/A interval on the goal metric, floored by the tolerance table."""
    cmp = aa.metrics[spec.metric]
    spread = max(abs(1 - cmp.ci_low), abs(cmp.ci_high - 1))
    return max(spec.tolerances.min_noise_band, spread)


def freeze_record(
    spec: GoalSpec, base_commit: str, aa: BenchRecord | None, reference_sha: str | None
) -> FreezeRecord:
    """What FREEZE pins; `aa` None gives the hashes alone (for the reviewer's recheck)."""
    cmp = aa.metrics[spec.metric] if aa else None
    return FreezeRecord(
        workload_fingerprint=spec.workload.fingerprint(),
        measured_workload_fingerprint=aa.workload_fingerprint if aa else None,
        bench_code_sha256=bench_code_sha256(),
        tolerance_sha256=spec.tolerance_sha256(),
        base_commit=base_commit,
        noise_band=noise_band(spec, aa) if aa else 0.0,
        aa_median_ratio=cmp.median_ratio if cmp else 1.0,
        aa_ci_low=cmp.ci_low if cmp else 1.0,
        aa_ci_high=cmp.ci_high if cmp else 1.0,
        reference_outputs_sha256=reference_sha,
    )
