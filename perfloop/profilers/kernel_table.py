"""Kernel table: where the stage's device time goes, and which Python line launched it."""

from __future__ import annotations

from collections import Counter, defaultdict

from perfloop.profilers.links import Activity

KERNEL_COLUMNS = ("Kernel", "Category", "GPU time", "Share", "Launches", "Python location", "CPU op")
MIN_SHARE_PCT = 1.0
MAX_SITES = 4


def ms(ns: float) -> float:
    """Nanoseconds -> milliseconds, rounded for tables."""
    return round(ns / 1e6, 4)


def pct(part: float, total: float) -> float:
    """Percentage, rounded to two decimals; 0 for an empty total."""
    return round(100.0 * part / total, 2) if total else 0.0


def site_summary(acts: list[Activity], limit: int = MAX_SITES) -> str:
    """`path:line function (site share NN%)` for the top sites by time, `; `-separated."""
    by_site: Counter = Counter()
    for a in acts:
        by_site[a.site] += a.dur
    total = sum(by_site.values())
    return "; ".join(f"{s} (site share {pct(t, total):.0f}%)" for s, t in by_site.most_common(limit))


def top_op(acts: list[Activity]) -> str:
    """The CPU op holding the most time among these activities."""
    ops: Counter = Counter()
    for a in acts:
        ops[a.cpu_op] += a.dur
    return ops.most_common(1)[0][0] if ops else ""


def group_by_name(acts: list[Activity]) -> dict[str, list[Activity]]:
    """Activities grouped by kernel name, largest total time first."""
    groups: dict[str, list[Activity]] = defaultdict(list)
    for a in acts:
        groups[a.name].append(a)
    return dict(sorted(groups.items(), key=lambda kv: -sum(a.dur for a in kv[1])))


def kernel_table(acts: list[Activity], show_all: bool = False) -> list[dict]:
    """One row per kernel name; rows under 1% share are folded into one row unless show_all."""
    total = sum(a.dur for a in acts)
    rows, hidden = [], []
    for name, group in group_by_name(acts).items():
        t = sum(a.dur for a in group)
        if not show_all and pct(t, total) < MIN_SHARE_PCT:
            hidden.append(group)
            continue
        rows.append(
            {
                "Kernel": name,
                "Category": group[0].category,
                "GPU time": ms(t),
                "Share": pct(t, total),
                "Launches": len(group),
                "Python location": site_summary(group),
                "CPU op": top_op(group),
            }
        )
    if hidden:
        rest = [a for g in hidden for a in g]
        t = sum(a.dur for a in rest)
        rows.append(
            {
                "Kernel": f"({len(hidden)} kernels under {MIN_SHARE_PCT:g}% each)",
                "Category": "mixed",
                "GPU time": ms(t),
                "Share": pct(t, total),
                "Launches": len(rest),
                "Python location": "",
                "CPU op": "",
            }
        )
    return rows
