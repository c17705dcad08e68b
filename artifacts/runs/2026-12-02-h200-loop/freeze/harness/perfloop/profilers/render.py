"""Writing typed rows as Markdown (labels, units, formatted numbers), CSV (snake_case keys) and JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from perfloop.profilers.rows import Column, Row

FORMATS = ("md", "csv", "json")


def _md_cell(column: Column, row: Row) -> str:
    return column.show(row).replace("|", "\\|").replace("; ", "<br>")


def markdown(title: str, columns: tuple[Column, ...], rows: list[Row]) -> str:
    """A Markdown table under a `#####` title; `; `-joined cells become line breaks."""
    lines = [
        f"##### {title}",
        "",
        "| " + " | ".join(c.header for c in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        lines.append("| " + " | ".join(_md_cell(c, row) for c in columns) + " |")
    if not rows:
        lines.append("| " + " | ".join("" for _ in columns) + " |")
    return "\n".join(lines) + "\n"


def to_csv(columns: tuple[Column, ...], rows: list[Row]) -> str:
    """CSV with a header row of the columns' snake_case keys and unformatted numbers."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([c.key for c in columns])
    writer.writerows([c.cell(row) for c in columns] for row in rows)
    return buf.getvalue()


def write_table(
    out_dir: Path,
    name: str,
    title: str,
    columns: tuple[Column, ...],
    rows: list[Row],
    formats: tuple[str, ...],
) -> str:
    """Write `<out_dir>/<name>.<fmt>` for each format; return the Markdown text. JSON holds whole rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(title, columns, rows)
    for fmt in formats:
        if fmt == "md":
            (out_dir / f"{name}.md").write_text(md)
        elif fmt == "csv":
            (out_dir / f"{name}.csv").write_text(to_csv(columns, rows))
        elif fmt == "json":
            (out_dir / f"{name}.json").write_text(json.dumps(rows, indent=1))
        else:
            raise ValueError(f"format: unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    return md
