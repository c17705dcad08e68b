"""`analyze`: a trace in, the kernel, overlap, fuse and host tables per stage out."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from perfloop.profilers.fuse import FUSE_COLUMNS, fuse_table
from perfloop.profilers.host import HOST_COLUMNS, host_table
from perfloop.profilers.kernel_table import KERNEL_COLUMNS, kernel_table
from perfloop.profilers.links import Activity, apply_mapping, build_activities
from perfloop.profilers.overlap import OVERLAP_COLUMNS, overlap_table
from perfloop.profilers.render import FORMATS, write_table
from perfloop.profilers.stages import step_windows
from perfloop.profilers.trace import Event, Trace, load_trace

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "kernel_table": KERNEL_COLUMNS,
    "overlap_table": OVERLAP_COLUMNS,
    "fuse_table": FUSE_COLUMNS,
    "host_table": HOST_COLUMNS,
}
TITLES = {
    "kernel_table": "Kernel Table",
    "overlap_table": "Overlap Opportunity Table",
    "fuse_table": "Fuse Pattern Table",
    "host_table": "Host Overhead Table",
}


def mapping_trace_for(trace_path: Path) -> Path | None:
    """The eager mapping trace `capture` writes next to a CUDA-graph trace, if there is one."""
    for name in ("trace.json.gz", "trace.json"):
        candidate = trace_path.parent / "mapping" / name
        if candidate.exists():
            return candidate
    return None


def load_activities(trace_path: Path, mapping_path: Path | None = None) -> tuple[Trace, list[Activity]]:
    """Trace and its attributed activities; graph replays take sites from the mapping trace."""
    trace = load_trace(trace_path)
    acts = build_activities(trace)
    mapping_path = mapping_path or mapping_trace_for(Path(trace_path))
    if mapping_path is not None and any(a.graph is not None for a in acts):
        acts = apply_mapping(acts, build_activities(load_trace(mapping_path)))
    return trace, acts


def step_events(trace: Trace) -> list[Event]:
    """Step windows in time order; Activity.step indexes into this list."""
    return step_windows(trace.annotations)


def by_stage(acts: list[Activity], stages: list[str] | None = None) -> dict[str, list[Activity]]:
    """Activities per stage, optionally only the named stages."""
    groups: dict[str, list[Activity]] = defaultdict(list)
    for a in acts:
        groups[a.stage].append(a)
    if stages:
        unknown = [s for s in stages if s not in groups]
        if unknown:
            raise ValueError(f"stage: {', '.join(unknown)} not in trace (found: {', '.join(sorted(groups))})")
        return {s: groups[s] for s in stages}
    return dict(sorted(groups.items()))


def stage_tables(
    acts: list[Activity], trace: Trace, steps: list[Event], show_all: bool = False
) -> dict[str, list[dict]]:
    """The four tables of one stage."""
    return {
        "kernel_table": kernel_table(acts, show_all),
        "overlap_table": overlap_table(acts, show_all),
        "fuse_table": fuse_table(acts, show_all=show_all),
        "host_table": host_table(acts, trace, steps),
    }


def analyze(
    trace_path: Path,
    out_dir: Path,
    formats: tuple[str, ...] = FORMATS,
    stages: list[str] | None = None,
    mapping_path: Path | None = None,
    show_all: bool = False,
) -> dict[str, dict[str, list[dict]]]:
    """Analyze one trace: write `<out_dir>/<stage>/<table>.<fmt>` and return stage -> table -> rows."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"format: unknown format {bad[0]!r}; choose from {', '.join(FORMATS)}")
    trace, acts = load_activities(Path(trace_path), mapping_path)
    if not acts:
        raise ValueError(f"trace: {trace_path} holds no kernels and no CPU ops to analyze")
    steps = step_events(trace)
    result: dict[str, dict[str, list[dict]]] = {}
    for stage, stage_acts in by_stage(acts, stages).items():
        tables = stage_tables(stage_acts, trace, steps, show_all)
        for name, rows in tables.items():
            write_table(
                Path(out_dir) / stage, name, f"{TITLES[name]} ({stage})", TABLE_COLUMNS[name], rows, formats
            )
        result[stage] = tables
    return result
