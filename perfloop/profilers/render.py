"""Writing table rows as Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

FORMATS = ("md", "csv", "json")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"
    return str(value).replace("|", "\\|").replace("; ", "<br>")


def markdown(title: str, columns: tuple[str, ...], rows: list[dict]) -> str:
    """A Markdown table under a `#####` title; `; `-joined cells become line breaks."""
    lines = [f"##### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    if not rows:
        lines.append("| " + " | ".join("" for _ in columns) + " |")
    return "\n".join(lines) + "\n"


def to_csv(columns: tuple[str, ...], rows: list[dict]) -> str:
    """CSV with a header row of the exact column names."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_table(
    out_dir: Path, name: str, title: str, columns: tuple[str, ...], rows: list[dict], formats: tuple[str, ...]
) -> str:
    """Write `<out_dir>/<name>.<fmt>` for each format; return the Markdown text."""
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
