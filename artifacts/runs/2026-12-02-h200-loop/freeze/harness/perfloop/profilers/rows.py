"""Typed table rows: column display specs, stable row ids and citations of rows.

A row is a dict of snake_case fields with numbers as numbers. Labels, units and number
formatting belong to the `Column`s and are applied only when a table is rendered. Each row of an
analysis table carries `row_id` = `stage/table/name`, where the name is the row's kernel, op,
pattern or item: it stays the same between rounds while row positions shift.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]
Tables = dict[str, dict[str, list[Row]]]

ROW_ID = "row_id"
MAX_NAME = 96  # longer names (templated CUDA kernels) keep a prefix and a hash of the whole name
_SEPARATORS = re.compile(r"[\s,;|`'\"]+")  # never inside an id: citations are split on them


@dataclass(frozen=True)
class Column:
    """One displayed column: the row field it shows, its label and unit, and how to format it."""

    key: str
    label: str
    unit: str = ""
    text: Callable[[Row], str] | None = None  # the cell built from the whole row (lists, composed cells)

    @property
    def header(self) -> str:
        """The Markdown header: label and unit, e.g. `Time (ms)`."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def cell(self, row: Row) -> Any:
        """The value as CSV writes it: typed scalars as they are, composed cells as text."""
        return self.text(row) if self.text else row.get(self.key)

    def show(self, row: Row) -> str:
        """The value as Markdown shows it: floats to at most 4 decimals, integers as integers."""
        value = self.cell(row)
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"
        return str(value)


_UNITS = {"ms": "ms", "us": "us", "pct": "%"}  # a key's suffix is its unit: `time_ms` shows as `Time (ms)`


def col(spec: str, text: Callable[[Row], str] | None = None) -> Column:
    """A column from `key` or `key=Label`; the unit comes from the key's suffix (`_ms`, `_us`, `_pct`)."""
    key, _, label = spec.partition("=")
    stem, _, suffix = key.rpartition("_")
    unit = _UNITS.get(suffix, "") if stem else ""
    return Column(key, label or (stem if unit else key).replace("_", " ").capitalize(), unit, text)


def columns(*specs: str | Column) -> tuple[Column, ...]:
    """Columns from `col` specs (or ready Columns, e.g. with units no suffix names)."""
    return tuple(s if isinstance(s, Column) else col(s) for s in specs)


ROW_ID_COLUMN = col("row_id")


def row_name(name: str) -> str:
    """A name made safe for an id: separators become `_`, long names keep a prefix and a hash."""
    slug = _SEPARATORS.sub("_", name.strip()) or "_"  # `aten::index_put_` keeps its trailing `_`
    if len(slug) <= MAX_NAME:
        return slug
    digest = hashlib.sha1(slug.encode()).hexdigest()[:8]
    return f"{slug[: MAX_NAME - 9]}~{digest}"


def row_id(stage: str, table: str, name: str) -> str:
    """The stable identity of a row: `stage/table/name` (e.g. `decode/kernel_table/aten::linear`)."""
    return f"{stage}/{table}/{row_name(name)}"


def with_ids(stage: str, table: str, rows: list[Row], key: Callable[[Row], str]) -> list[Row]:
    """Rows with `row_id` first; a name that repeats in the table gets `~2`, `~3`, ... in order."""
    seen: dict[str, int] = {}
    out = []
    for row in rows:
        rid = row_id(stage, table, key(row))
        seen[rid] = seen.get(rid, 0) + 1
        out.append({ROW_ID: rid if seen[rid] == 1 else f"{rid}~{seen[rid]}", **row})
    return out


def profile_rows(tables: Tables) -> dict[str, Row]:
    """Every citeable row of a profile, by id (rows without an id cannot be cited)."""
    return {
        row[ROW_ID]: row
        for by_table in tables.values()
        for rows in by_table.values()
        for row in rows
        if ROW_ID in row
    }


def is_empty(row: Row) -> bool:
    """A row with no measured content: every number in it is zero or missing."""
    numbers = [v for v in row.values() if isinstance(v, int | float) and not isinstance(v, bool)]
    return not any(numbers)


_CITE = re.compile(r"^[\w.-]+/[\w.-]+/\S+$")


def parse_cites(text: str) -> list[str]:
    """Row ids named in a `Cites:` trailer (separated by spaces or commas, optionally in backticks)."""
    return [t for t in _SEPARATORS.split(text) if _CITE.match(t)]
