"""Kernel table: where the stage's device time goes, and which Python line launched it."""

from __future__ import annotations

from collections import Counter, defaultdict

from perfloop.profilers.links import Activity
from perfloop.profilers.rows import Column, Row, col, columns

MIN_SHARE_PCT = 1.0
MAX_SITES = 4
FOLDED = "(folded)"  # the id name of the closing row that sums the rows under MIN_SHARE_PCT


def ms(ns: float) -> float:
    """Nanoseconds -> milliseconds, rounded for tables."""
    return round(ns / 1e6, 4)


def pct(part: float, total: float) -> float:
    """Percentage, rounded to two decimals; 0 for an empty total."""
    return round(100.0 * part / total, 2) if total else 0.0


def python_sites(acts: list[Activity], limit: int = MAX_SITES) -> list[Row]:
    """The top `path:line function` sites by time, each with its share of these activities' time."""
    by_site: Counter = Counter()
    for a in acts:
        by_site[a.site] += a.dur
    total = sum(by_site.values())
    return [{"site": s, "share_pct": pct(t, total)} for s, t in by_site.most_common(limit)]


def sites_text(key: str) -> Column:
    """A column showing a `python_sites` field as `path:line function (site share NN%)`, `; `-joined."""

    def text(row: Row) -> str:
        return "; ".join(f"{s['site']} (site share {s['share_pct']:.0f}%)" for s in row[key])

    return col(f"{key}=Python location", text)


def joined(key: str, label: str) -> Column:
    """A column showing a list field `; `-joined."""
    return col(f"{key}={label}", lambda row: "; ".join(str(v) for v in row[key]))


def kernel_key(row: Row) -> str:
    """Identity of a kernel-named row: the kernel, or FOLDED for the closing row."""
    return FOLDED if row["folded"] else row["kernel"]


def folded_name(count: int) -> str:
    """The display name of the closing row."""
    return f"({count} kernels under {MIN_SHARE_PCT:g}% each)"


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


KERNEL_COLUMNS = columns(
    "kernel", "category", "time_ms", "share_pct", "launches", sites_text("python_sites"), "cpu_op=CPU op"
)


def kernel_table(acts: list[Activity], show_all: bool = False) -> list[Row]:
    """One row per kernel name; rows under 1% share are folded into one row unless show_all."""
    total = sum(a.dur for a in acts)
    rows, hidden = [], []
    for name, group in group_by_name(acts).items():
        t = sum(a.dur for a in group)
        if not show_all and pct(t, total) < MIN_SHARE_PCT:
            hidden.append(group)
            continue
        rows.append(_row(name, group[0].category, t, total, group, python_sites(group), top_op(group)))
    if hidden:
        rest = [a for g in hidden for a in g]
        rows.append(_row(folded_name(len(hidden)), "mixed", sum(a.dur for a in rest), total, rest, [], ""))
        rows[-1]["folded"] = True
    return rows


def _row(
    name: str, category: str, t: int, total: int, group: list[Activity], sites: list[Row], op: str
) -> Row:
    return {
        "kernel": name,
        "category": category,
        "time_ms": ms(t),
        "share_pct": pct(t, total),
        "launches": len(group),
        "python_sites": sites,
        "cpu_op": op,
        "folded": False,
    }
