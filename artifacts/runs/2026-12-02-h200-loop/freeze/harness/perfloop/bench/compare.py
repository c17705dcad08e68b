"""Side-by-side comparison of result files, refusing different workloads unless forced,
and different weight precisions unless explicitly allowed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from rich.table import Table

from perfloop.bench.precision import check_precisions
from perfloop.bench.result import BenchResult

COMPARE_METRICS = (
    "completed",
    "failed",
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "mean_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "p99_tpot_ms",
    "mean_itl_ms",
    "p99_itl_ms",
    "mean_e2el_ms",
    "p99_e2el_ms",
)


class UnfairComparison(ValueError):
    """Results measured on different workloads."""


class Comparison(BaseModel):
    """Metric rows for each result, with each value's ratio to the first result."""

    model_config = ConfigDict(extra="forbid")

    files: list[str]
    labels: list[str]
    fair: bool
    workload_fingerprints: list[str]
    rows: dict[str, list[float | None]]
    ratios: dict[str, list[float | None]]
    precision_note: str | None = None


def compare_results(
    paths: Sequence[Path | str], force: bool = False, allow_precision_mismatch: bool = False
) -> Comparison:
    """Load results and line them up; raise on differing workloads (unless forced) or precisions."""
    if len(paths) < 2:
        raise ValueError("compare: give at least two result files")
    results = [BenchResult.load(p) for p in paths]
    prints = [r.perfloop.workload_fingerprint for r in results]
    fair = len(set(prints)) == 1
    if not fair and not force:
        lines = "\n".join(f"  {p}: {fp}" for p, fp in zip(paths, prints, strict=True))
        raise UnfairComparison(f"workload fingerprints differ; refusing to compare (use --force):\n{lines}")
    labels = [r.label or Path(p).stem for r, p in zip(results, paths, strict=True)]
    weights = [r.perfloop.environment.weights for r in results]
    precision_note = check_precisions(list(zip(labels, weights, strict=True)), allow_precision_mismatch)
    rows: dict[str, list[float | None]] = {}
    ratios: dict[str, list[float | None]] = {}
    for metric in COMPARE_METRICS:
        vals = [r.metric(metric) for r in results]
        rows[metric] = vals
        base = vals[0]
        ratios[metric] = [None if v is None or not base else v / base for v in vals]
    return Comparison(
        files=[str(p) for p in paths],
        labels=labels,
        fair=fair,
        workload_fingerprints=prints,
        rows=rows,
        ratios=ratios,
        precision_note=precision_note,
    )


def render(comparison: Comparison) -> Table:
    """A rich table: one column per result, ratios to the first in parentheses."""
    title = "bench compare" if comparison.fair else "bench compare [bold red]UNFAIR: workloads differ[/]"
    if comparison.precision_note:
        title += f"\n[bold red]{comparison.precision_note}[/]"
    table = Table(title=title)
    table.add_column("metric")
    for label in comparison.labels:
        table.add_column(label, justify="right")
    for metric, vals in comparison.rows.items():
        cells = []
        for i, (v, r) in enumerate(zip(vals, comparison.ratios[metric], strict=True)):
            text = "-" if v is None else f"{v:,.2f}"
            if i and r is not None:
                text += f" ({r:.2f}x)"
            cells.append(text)
        table.add_row(metric, *cells)
    return table
