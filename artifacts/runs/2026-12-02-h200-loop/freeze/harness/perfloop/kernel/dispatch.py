"""Per-bucket dispatch: the candidate takes a shape bucket only where it is faster in every paired trial and
by at least the task's margin; elsewhere the baseline stays, with the bound that explains why."""

from __future__ import annotations

import statistics

from perfloop.kernel.timing import PairTiming
from perfloop.ledger.kernel_records import DispatchRow, NcuDigest


def active_bound(
    us: float, roofline: tuple[float, float] | None, copy_gbps: float | None, ncu: NcuDigest | None
) -> str:
    """What limits the kernel: NCU's reading when there is one, else achieved bandwidth vs measured copy."""
    if ncu is not None and ncu.bound != "unknown":
        dram = (
            f", DRAM {ncu.dram_throughput_pct:.0f} % of peak" if ncu.dram_throughput_pct is not None else ""
        )
        return f"{ncu.bound} (NCU{dram})"
    if roofline is None or not copy_gbps:
        return "unknown (no roofline or copy bandwidth)"
    gbps = roofline[1] / (us * 1e-6) / 1e9
    share = 100.0 * gbps / copy_gbps
    kind = "memory" if share >= 70 else "latency"
    return f"{kind} ({gbps:.0f} GB/s = {share:.0f} % of copy)"


def decide(bucket: str, timing: PairTiming, min_speedup: float, bound: str) -> DispatchRow:
    """One bucket's decision from its paired trials."""
    base, cand = timing.baseline_median_us, timing.candidate_median_us
    always_faster = min(timing.speedups) > 1.0
    take = always_faster and timing.speedup >= min_speedup
    if take:
        reason = f"faster in all {len(timing.speedups)} trials, x{timing.speedup:.3f} >= x{min_speedup}"
    elif timing.speedup >= min_speedup:
        reason = f"x{timing.speedup:.3f} but slower in some trial (min x{min(timing.speedups):.3f})"
    else:
        reason = f"x{timing.speedup:.3f} < x{min_speedup}: no-go, bound {bound}"
    return DispatchRow(
        bucket=bucket,
        baseline_us=round(base, 3),
        candidate_us=round(cand, 3),
        speedup=round(timing.speedup, 4),
        active_bound=bound,
        decision="candidate" if take else "baseline",
        reason=reason,
    )


def geomean(values: list[float]) -> float:
    """Equal-weight geometric mean: the task's headline over its rows."""
    return statistics.geometric_mean(values) if values else 1.0


def dispatch_markdown(rows: list[DispatchRow]) -> str:
    """`bucket | baseline us | candidate us | speedup | active bound (NCU) | decision`."""
    head = (
        "| bucket | baseline us | candidate us | speedup | active bound (NCU) | decision |\n"
        "|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r.bucket} | {r.baseline_us:.2f} | {r.candidate_us:.2f} | x{r.speedup:.3f} | {r.active_bound} | "
        f"{r.decision}: {r.reason} |\n"
        for r in rows
    )
    return head + body
