"""A round's verdict and the reason it gives: the failing gate and the metric that failed.

ADVANCED: every gate passed. REGRESSED: only when the goal metric itself got worse (its whole
interval below 1 - noise band, oriented so > 1 is better). STALLED: the goal metric stayed within
the noise and nothing else failed. REJECTED: any other gate failed; the reason names it with its
evidence, e.g. "no_regression (p99_ttft_ms x1.440 > 1.250)".
"""

from __future__ import annotations

from perfloop.ledger.records import BenchRecord, GateResult, ReviewRecord, Verdict


def round_verdict(
    metric: str, band: float, revalidate: BenchRecord | None, gates: list[GateResult]
) -> tuple[Verdict, str]:
    """The verdict of a reviewed round and why, from its gates and revalidation."""
    failed = [g for g in gates if not g.passed]
    cmp = revalidate.metrics.get(metric) if revalidate else None
    shown = ""
    if cmp is not None:
        shown = f"{metric} x{cmp.median_ratio:.3f} [{cmp.ci_low:.3f}, {cmp.ci_high:.3f}]"
        high = cmp.ci_high if cmp.higher_is_better else 1 / cmp.ci_low
        if high < 1 - band:
            return "REGRESSED", f"{shown}: whole interval worse than 1 - noise band {band:.3f}"
    if not failed:
        return "ADVANCED", f"{shown} clears 1 + noise band {band:.3f}"
    if [g.gate for g in failed] == ["beyond_noise"]:
        return "STALLED", f"beyond_noise ({shown} does not clear 1 + noise band {band:.3f})"
    first = next(g for g in failed if g.gate != "beyond_noise")
    return "REJECTED", f"{first.gate} ({first.evidence})"


def verdict_line(review: ReviewRecord) -> str:
    """ "VERDICT: why" as the report, summary and status print it."""
    return f"{review.verdict}: {review.why}" if review.why else review.verdict
