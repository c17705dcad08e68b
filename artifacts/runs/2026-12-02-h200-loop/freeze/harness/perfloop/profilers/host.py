"""Host-overhead table: device busy vs idle per step, the largest idle gaps and what the host was
doing in them, launch counts and launch cost. It is the table that shows an engine is launch-bound."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

from perfloop.profilers.kernel_table import ms, pct
from perfloop.profilers.links import Activity, sweep
from perfloop.profilers.rows import Row, col, columns
from perfloop.profilers.trace import Event, Trace

TOP_GAPS = 10
TOP_STEPS = 10
LAUNCH_BOUND_IDLE = 30.0  # % of step wall the device sits idle
SMALL_KERNEL_NS = 20_000


def merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of intervals, sorted and non-overlapping."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _length(intervals: list[tuple[int, int]]) -> int:
    return sum(e - s for s, e in intervals)


def step_windows(acts: list[Activity], steps: list[Event]) -> dict[int | None, tuple[int, int]]:
    """Each step's window: its host annotation, stretched to cover the device work it launched."""
    by_step: dict[int | None, list[Activity]] = defaultdict(list)
    for a in acts:
        by_step[a.step].append(a)
    windows = {}
    for step, group in by_step.items():
        lo, hi = min(a.start for a in group), max(a.end for a in group)
        if step is not None and step < len(steps):
            lo, hi = min(lo, steps[step].start), max(hi, steps[step].end)
        windows[step] = (lo, hi)
    return windows


def host_table(acts: list[Activity], trace: Trace, steps: list[Event]) -> list[Row]:
    """Rows: device busy/idle (shares add to 100% of the stage's step wall time), steps, gaps, launches."""
    if not acts:
        return []
    windows = step_windows(acts, steps)
    wall_iv = merge(list(windows.values()))
    wall = _length(wall_iv)
    busy_iv = merge([(a.start, a.end) for a in acts])
    busy = _length(busy_iv)
    gaps = _gaps(busy_iv, wall_iv)
    rows = [
        _row("device", "busy", busy, wall, len(acts), "", "union of kernel (or leaf CPU op) intervals"),
        _row("device", "idle", wall - busy, wall, len(gaps), "", "inside step windows, nothing running"),
    ]
    rows += _step_rows(acts, windows, steps, wall)
    rows += _gap_rows(gaps, acts, trace, wall)
    rows += _launch_rows(acts, trace, wall)
    rows.append(_verdict(acts, pct(wall - busy, wall)))
    return rows


def _row(
    section: str, item: str, ns: int | None, wall: int, count: int, op: str, detail: str, **numbers: float
) -> Row:
    """A host row; `numbers` (busy_ms, idle_ms, median_us, kernels) feed the Detail cell at render time."""
    row = {
        "section": section,
        "item": item,
        "time_ms": None if ns is None else ms(ns),
        "share_pct": None if ns is None else pct(ns, wall),
        "count": count,
        "cpu_op": op,
        "detail": detail,
    }
    return row | {k: numbers.get(k) for k in DETAIL_NUMBERS}


DETAIL_NUMBERS = ("busy_ms", "idle_ms", "median_us", "kernels")


def host_detail(row: Row) -> str:
    """The Detail cell: the row's words and its numbers, formatted here and never stored formatted."""
    if row["busy_ms"] is not None:
        busy = pct(row["busy_ms"], row["time_ms"])
        return f"busy {row['busy_ms']} ms ({busy:.0f}%), idle {row['idle_ms']} ms"
    if row["section"] == "verdict":
        return f"{row['detail']} (idle {row['share_pct']:.1f}%, median kernel {row['median_us']:.1f} us)"
    if row["median_us"] is not None:
        return f"{row['detail']} {row['median_us']:.1f} us"
    if row["kernels"] is not None:
        return f"{row['kernels']} {row['detail']}"
    return row["detail"]


def host_key(row: Row) -> str:
    """Identity of a host row: `section:item` (e.g. `verdict:launch-bound`, `device:idle`)."""
    return f"{row['section']}:{row['item']}"


HOST_COLUMNS = columns(
    "section", "item", "time_ms", "share_pct", "count", "cpu_op=CPU op", col("detail", host_detail)
)


def _gaps(busy: list[tuple[int, int]], walls: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Idle stretches inside the step windows."""
    gaps = []
    k = 0  # both lists are sorted and merged: one forward pass
    for lo, hi in walls:
        while k < len(busy) and busy[k][1] <= lo:
            k += 1
        cursor, j = lo, k
        while j < len(busy) and busy[j][0] < hi:
            s, e = busy[j]
            if s > cursor:
                gaps.append((cursor, s))
            cursor = max(cursor, e)
            j += 1
        if cursor < hi:
            gaps.append((cursor, hi))
    return gaps


def _step_rows(
    acts: list[Activity], windows: dict[int | None, tuple[int, int]], steps: list[Event], wall: int
) -> list[Row]:
    by_step: dict[int | None, list[Activity]] = defaultdict(list)
    for a in acts:
        by_step[a.step].append(a)
    ranked = sorted(windows.items(), key=lambda kv: -(kv[1][1] - kv[1][0]))
    rows = []
    for step, (lo, hi) in ranked[:TOP_STEPS]:
        busy = _length(merge([(a.start, a.end) for a in by_step[step]]))
        label = steps[step].name if step is not None and step < len(steps) else "(outside annotated steps)"
        rows.append(
            _row(
                "step",
                f"#{step} {label}",
                hi - lo,
                wall,
                len(by_step[step]),
                "",
                "",
                busy_ms=ms(busy),
                idle_ms=ms(hi - lo - busy),
            )
        )
    rest = ranked[TOP_STEPS:]
    if rest:
        t = sum(hi - lo for _, (lo, hi) in rest)
        n = sum(len(by_step[s]) for s, _ in rest)
        rows.append(_row("step", f"({len(rest)} shorter steps)", t, wall, n, "", ""))
    return rows


def _host_thread(trace: Trace) -> list[Event]:
    """The busiest host thread's events (the one the engine loop runs on)."""
    counts = Counter((e.pid, e.tid) for e in trace.cpu_ops)
    if not counts:
        return []
    main = counts.most_common(1)[0][0]
    return [e for g in (trace.python, trace.cpu_ops, trace.annotations) for e in g if (e.pid, e.tid) == main]


def _gap_rows(gaps: list[tuple[int, int]], acts: list[Activity], trace: Trace, wall: int) -> list[Row]:
    top = sorted(gaps, key=lambda g: g[0] - g[1])[:TOP_GAPS]
    if not top:
        return []
    ctxs = sweep(_host_thread(trace), [((s + e) // 2, k) for k, (s, e) in enumerate(top)])
    starts = sorted((a.start, a.name) for a in acts)
    ends = sorted((a.end, a.name) for a in acts)
    rows = []
    for k, (s, e) in enumerate(top):
        ctx = ctxs.get(k)
        op = (ctx.outer_op or ctx.scope or ctx.site) if ctx else ""
        before = next((n for t, n in reversed(ends) if t <= s), "(start)")
        after = next((n for t, n in starts if t >= e), "(end)")
        host = f"; host in {ctx.site}" if ctx and ctx.site and op != ctx.site else ""
        rows.append(
            _row("gap", f"idle gap {k + 1}", e - s, wall, 1, op, f"after {before} before {after}{host}")
        )
    return rows


def _launch_rows(acts: list[Activity], trace: Trace, wall: int) -> list[Row]:
    if not trace.has_device:
        durs = [a.dur for a in acts]
        return [
            _row(
                "launch",
                "op dispatches",
                sum(durs),
                wall,
                len(acts),
                "",
                "median op",
                median_us=round(statistics.median(durs) / 1000, 3),
            )
        ]
    launches = {(a.launch_start, a.launch_end) for a in acts if a.launch_start is not None}
    cost = sum(e - s for s, e in launches)
    delays = [a.start - a.launch_start for a in acts if a.launch_start is not None]
    graphs = {a.graph for a in acts if a.graph is not None}
    rows = [
        _row("launch", "kernel launches", cost, wall, len(launches), "", "host time inside launch calls"),
        _row(
            "launch",
            "graph launches",
            0,
            wall,
            len(graphs),
            "",
            "replayed kernels",
            kernels=sum(a.graph is not None for a in acts),
        ),
    ]
    if delays:
        mean_delay = int(statistics.mean(delays))
        rows.append(
            _row(
                "launch",
                "launch -> start delay (mean)",
                mean_delay,
                wall,
                len(delays),
                "",
                "kernel start minus launch call",
            )
        )
    return rows


def _verdict(acts: list[Activity], idle_pct: float) -> Row:
    median = statistics.median(a.dur for a in acts)
    if idle_pct >= LAUNCH_BOUND_IDLE and median < SMALL_KERNEL_NS:
        verdict, detail = (
            "launch-bound",
            "device idle between many small kernels: cut launches (CUDA graphs, fusion)",
        )
    elif idle_pct >= LAUNCH_BOUND_IDLE:
        verdict, detail = "host-bound", "device waits on host work between kernels"
    else:
        verdict, detail = "device-bound", "device busy most of each step: optimise the kernels themselves"
    row = _row("verdict", verdict, None, 0, len(acts), "", detail, median_us=round(median / 1000, 3))
    row["share_pct"] = idle_pct
    return row
