"""`analyze`: a trace in, the registered tables per stage out.

Tables are one registry, `TABLES`: adding a table is one `TableSpec` entry (its columns, how to
compute its rows from a stage, and what names a row). Every row gets its stable `row_id`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from perfloop.profilers.fuse import FUSE_COLUMNS, fuse_key, fuse_table
from perfloop.profilers.host import HOST_COLUMNS, host_key, host_table
from perfloop.profilers.kernel_table import KERNEL_COLUMNS, kernel_key, kernel_table
from perfloop.profilers.links import Activity, apply_mapping, build_activities
from perfloop.profilers.overlap import OVERLAP_COLUMNS, overlap_table
from perfloop.profilers.render import FORMATS, markdown, write_table
from perfloop.profilers.rows import ROW_ID_COLUMN, Column, Row, Tables, with_ids
from perfloop.profilers.stages import step_windows
from perfloop.profilers.trace import Event, Trace, load_trace


@dataclass(frozen=True)
class Stage:
    """What a table is computed from: one stage's activities and the trace around them."""

    name: str
    acts: list[Activity]
    trace: Trace
    steps: list[Event]
    show_all: bool


@dataclass(frozen=True)
class TableSpec:
    """One analysis table: file name, title, displayed columns, row builder, and what names a row
    in its id (default: the first column's value)."""

    name: str
    title: str
    columns: tuple[Column, ...]
    fn: Callable[[Stage], list[Row]]
    key: Callable[[Row], str] | None = None

    def rows(self, stage: Stage) -> list[Row]:
        """The table's rows for one stage, each with its `row_id`."""
        return with_ids(stage.name, self.name, self.fn(stage), self.key or self._first_column)

    def _first_column(self, row: Row) -> str:
        return str(row[self.columns[0].key])

    def render(self, stage: str, rows: list[Row]) -> str:
        """The Markdown table of one stage."""
        return markdown(self.heading(stage), self.shown, rows)

    def heading(self, stage: str) -> str:
        """`Kernel Table (decode)`."""
        return f"{self.title} ({stage})"

    @property
    def shown(self) -> tuple[Column, ...]:
        """The columns every format shows: the table's own, then the row id."""
        return (*self.columns, ROW_ID_COLUMN)


TABLES: list[TableSpec] = [
    TableSpec(
        "kernel_table", "Kernel Table", KERNEL_COLUMNS, lambda s: kernel_table(s.acts, s.show_all), kernel_key
    ),
    TableSpec(
        "overlap_table",
        "Overlap Opportunity Table",
        OVERLAP_COLUMNS,
        lambda s: overlap_table(s.acts, s.show_all),
        kernel_key,
    ),
    TableSpec(
        "fuse_table",
        "Fuse Pattern Table",
        FUSE_COLUMNS,
        lambda s: fuse_table(s.acts, show_all=s.show_all),
        fuse_key,
    ),
    TableSpec(
        "host_table",
        "Host Overhead Table",
        HOST_COLUMNS,
        lambda s: host_table(s.acts, s.trace, s.steps),
        host_key,
    ),
]


def table_spec(name: str) -> TableSpec:
    """The registered table of that name."""
    return next(t for t in TABLES if t.name == name)


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


def analyze(
    trace_path: Path,
    out_dir: Path,
    formats: tuple[str, ...] = FORMATS,
    stages: list[str] | None = None,
    mapping_path: Path | None = None,
    show_all: bool = False,
) -> Tables:
    """Analyze one trace: write `<out_dir>/<stage>/<table>.<fmt>` and return stage -> table -> rows."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"format: unknown format {bad[0]!r}; choose from {', '.join(FORMATS)}")
    trace, acts = load_activities(Path(trace_path), mapping_path)
    if not acts:
        raise ValueError(f"trace: {trace_path} holds no kernels and no CPU ops to analyze")
    steps = step_events(trace)
    result: Tables = {}
    for name, stage_acts in by_stage(acts, stages).items():
        stage = Stage(name, stage_acts, trace, steps, show_all)
        result[name] = {}
        for spec in TABLES:
            rows = spec.rows(stage)
            write_table(Path(out_dir) / name, spec.name, spec.heading(name), spec.shown, rows, formats)
            result[name][spec.name] = rows
    return result
