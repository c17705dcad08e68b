"""Production rows: which kernels a real workload launched, at which shapes, and what share of the time.

A bucket is one kernel at one launch shape (grid, block) and one set of input dims of the op that
launched it. Triton kernels carry no op shapes of their own, so their grid (which encodes the problem
size) is what tells two projections apart.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import msgspec

from perfloop.ledger.kernel_records import ProductionRow
from perfloop.profilers.links import Activity
from perfloop.profilers.tables import load_activities
from perfloop.profilers.trace import KERNEL_CATS, read_bytes, to_ns


class _LaunchArgs(msgspec.Struct):
    grid: list[int] = msgspec.field(default_factory=list)
    block: list[int] = msgspec.field(default_factory=list)


class _KernelEvent(msgspec.Struct):
    ph: str = ""
    cat: str = ""
    name: str = ""
    ts: float = 0.0
    args: _LaunchArgs | None = None


class _Launches(msgspec.Struct):
    traceEvents: list[_KernelEvent]  # noqa: N815 - the trace's own key


def launch_shapes(trace_path: Path) -> dict[tuple[str, int], tuple[list[int], list[int]]]:
    """(kernel name, start ns) -> (grid, block) for every kernel event of the trace."""
    raw = msgspec.json.decode(read_bytes(trace_path), type=_Launches)
    return {
        (ev.name, to_ns(ev.ts)): (ev.args.grid, ev.args.block)
        for ev in raw.traceEvents
        if ev.ph == "X" and ev.cat in KERNEL_CATS and ev.args is not None
    }


def bucket_id(stage: str, kernel: str, grid: list[int], dims: str) -> str:
    """Stable name of a bucket: the same launch in another trace gets the same id."""
    g = "x".join(map(str, grid)) if grid else "-"
    return f"{stage}/{kernel}/grid={g}/dims={dims or '-'}"


def extract_rows(
    trace_path: Path, kernel: str | None = None, stage: str | None = None, min_share: float = 0.0
) -> list[ProductionRow]:
    """Shape buckets of the trace's device kernels, largest share of their stage first.

    `kernel` keeps names containing it; `stage` keeps one stage; `min_share` (percent) drops the tail.
    """
    _, acts = load_activities(trace_path)
    shapes = launch_shapes(trace_path)
    stage_total: dict[str, int] = defaultdict(int)
    groups: dict[str, list[tuple[Activity, list[int], list[int]]]] = defaultdict(list)
    for a in acts:
        stage_total[a.stage] += a.dur
        if (kernel and kernel not in a.name) or (stage and a.stage != stage):
            continue
        grid, block = shapes.get((a.name, a.start), ([], []))
        groups[bucket_id(a.stage, a.name, grid, a.input_dims)].append((a, grid, block))
    rows = [_row(bucket, members, stage_total) for bucket, members in groups.items()]
    rows = [r for r in rows if r.share_pct >= min_share]
    return sorted(rows, key=lambda r: -r.device_us)


def _row(bucket: str, members: list[tuple[Activity, list[int], list[int]]], totals: dict) -> ProductionRow:
    first, grid, block = members[0]
    total_ns = sum(a.dur for a, _, _ in members)
    sites: dict[str, int] = defaultdict(int)
    for a, _, _ in members:
        sites[a.site] += a.dur
    return ProductionRow(
        bucket=bucket,
        stage=first.stage,
        kernel=first.name,
        cpu_op=first.cpu_op,
        input_dims=first.input_dims,
        grid=grid,
        block=block,
        site=max(sites, key=sites.__getitem__),
        calls=len(members),
        device_us=round(total_ns / 1e3, 3),
        share_pct=round(100.0 * total_ns / totals[first.stage], 3) if totals[first.stage] else 0.0,
    )
