"""Overlap-opportunity table: an all-stream sweep splits each kernel's time into exclusive and hidden.

A kernel is *hidden* while work on another stream (or thread) runs at the same time and
*exclusive* otherwise; exclusive time is what overlapping or fusing could win back.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from perfloop.profilers.categories import COMPUTE_CATEGORIES
from perfloop.profilers.kernel_table import MIN_SHARE_PCT, folded_name, group_by_name, ms, pct
from perfloop.profilers.links import Activity
from perfloop.profilers.rows import Row, columns

# The formal signal: time, share of the stage, and the exclusive / hidden split of that time.
OVERLAP_COLUMNS = columns(
    "priority",
    "verdict",
    "kernel",
    "python_scope",
    "time_ms",
    "share_pct",
    "exclusive_pct",
    "hidden_pct",
    "dep_risk",
    "recommendation",
)
_WEIGHT = {"communication": 1.3, "memory": 1.15, "other": 0.8}
HEADROOM_MIN_NS = 5_000
HEADROOM_EXCL = 0.45
HIDDEN_LOW_ROI = 0.65


@dataclass
class Split:
    exclusive: int = 0
    hidden: int = 0


def sweep_overlap(acts: list[Activity]) -> list[Split]:
    """Exclusive and hidden ns of each activity, over all streams at once."""
    points = []
    for i, a in enumerate(acts):
        points.append((a.start, 1, i))
        points.append((a.end, 0, i))
    points.sort()  # ends (0) before starts (1) at equal times: touching kernels do not overlap
    splits = [Split() for _ in acts]
    active: set[int] = set()
    last = points[0][0] if points else 0
    for t, is_start, i in points:
        dt = t - last
        if dt and active:
            if len(active) == 1:
                splits[next(iter(active))].exclusive += dt
            else:
                for j in active:
                    splits[j].hidden += dt
        last = t
        if is_start:
            active.add(i)
        else:
            active.discard(i)
    return splits


def _weight(category: str) -> float:
    if category in COMPUTE_CATEGORIES:
        return 0.35
    return _WEIGHT.get(category, 1.0)


def dep_risks(acts: list[Activity]) -> list[tuple[bool, bool]]:
    """(prev-side, next-side) serial risk per activity: a tight neighbour on the same stream that
    shares its scope or CPU op probably feeds it or consumes it."""
    by_stream: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(acts):
        by_stream[a.stream].append(i)
    risks = [(False, False)] * len(acts)
    for idx in by_stream.values():
        idx.sort(key=lambda i: acts[i].start)
        for pos, i in enumerate(idx):
            a = acts[i]
            prev = acts[idx[pos - 1]] if pos > 0 else None
            nxt = acts[idx[pos + 1]] if pos + 1 < len(idx) else None
            risks[i] = (
                _tight(prev, a, a.start - prev.end if prev else 0),
                _tight(nxt, a, nxt.start - a.end if nxt else 0),
            )
    return risks


def _tight(other: Activity | None, a: Activity, gap_ns: int) -> bool:
    if other is None:
        return False
    limit = max(2_000, min(20_000, 0.15 * a.dur))
    return gap_ns <= limit and (other.scope == a.scope or other.cpu_op == a.cpu_op)


def _risk_label(prev_frac: float, next_frac: float) -> str:
    if prev_frac > 0.5 and next_frac > 0.5:
        return "high (both-side serial risk)"
    if prev_frac > 0.5:
        return "high (prev-side)"
    if next_frac > 0.5:
        return "high (next-side)"
    if prev_frac < 0.2 and next_frac < 0.2:
        return "low (serial risk low)"
    return "unclear (adjacency unclear)"


def _decide(
    share: float, total: int, excl: float, hid: float, category: str, risk: str
) -> tuple[str, str, str]:
    """(priority, verdict, recommendation) by the anchor's ordered rules."""
    headroom = total >= HEADROOM_MIN_NS and excl >= HEADROOM_EXCL
    low_roi = category in ("elementwise", "memory") and hid >= HIDDEN_LOW_ROI
    verdict = "headroom" if headroom else "low-roi-hidden" if low_roi else "hidden" if hid >= 0.7 else "mixed"
    if share < MIN_SHARE_PCT:
        return "P5", verdict, "skip"
    if headroom and risk.startswith("low"):
        if category == "communication" or category == "memory":
            return "P1", verdict, "try overlap"
        return "P1", verdict, "keep (compute-bound)" if category in COMPUTE_CATEGORIES else "try fusion"
    if headroom:
        return "P2", verdict, "check deps"
    if low_roi:
        return "P4", verdict, "skip"
    if excl >= 0.85 and risk.startswith("low"):
        return "P3", verdict, "defer"
    if hid >= 0.7:
        return "P5", verdict, "skip"
    if risk.startswith("high"):
        return "P4", verdict, "check deps"
    return "P4", verdict, "inspect"


def overlap_table(acts: list[Activity], show_all: bool = False) -> list[Row]:
    """One row per kernel name, best opportunities first; rows under 1% share folded into one."""
    splits = sweep_overlap(acts)
    risks = dep_risks(acts)
    index = {id(a): i for i, a in enumerate(acts)}
    stage_total = sum(a.dur for a in acts)
    ranked, hidden_rows = [], []
    for name, group in group_by_name(acts).items():
        ids = [index[id(a)] for a in group]
        total = sum(a.dur for a in group)
        excl = sum(splits[i].exclusive for i in ids)
        hid = sum(splits[i].hidden for i in ids)
        share = pct(total, stage_total)
        if not show_all and share < MIN_SHARE_PCT:
            hidden_rows.append((total, excl, hid))
            continue
        risk = _risk_label(sum(risks[i][0] for i in ids) / len(ids), sum(risks[i][1] for i in ids) / len(ids))
        category = group[0].category
        prio, verdict, rec = _decide(
            share, total, excl / total if total else 0, hid / total if total else 0, category, risk
        )
        scope = Counter(a.scope for a in group).most_common(1)[0][0]
        row = _row(prio, verdict, name, scope, (total, excl, hid), stage_total, risk, rec)
        ranked.append(((prio, -excl * _weight(category)), row))
    rows = [r for _, r in sorted(ranked, key=lambda x: x[0])]
    if hidden_rows:
        sums = tuple(sum(h[k] for h in hidden_rows) for k in range(3))
        rows.append(
            _row("P5", "negligible", folded_name(len(hidden_rows)), "", sums, stage_total, "", "skip")
        )
        rows[-1]["folded"] = True
    return rows


def _row(
    prio: str,
    verdict: str,
    name: str,
    scope: str,
    times: tuple[int, int, int],
    stage_total: int,
    risk: str,
    rec: str,
) -> Row:
    total, excl, hid = times
    return {
        "priority": prio,
        "verdict": verdict,
        "kernel": name,
        "python_scope": scope,
        "time_ms": ms(total),
        "share_pct": pct(total, stage_total),
        "exclusive_pct": pct(excl, total),
        "hidden_pct": pct(hid, total),
        "dep_risk": risk,
        "recommendation": rec,
        "folded": False,
    }
