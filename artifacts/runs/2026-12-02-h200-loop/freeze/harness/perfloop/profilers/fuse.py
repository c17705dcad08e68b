"""Fuse-pattern table: deterministic matches of `catalog/fuse_patterns.yaml` against a stage's kernels."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from perfloop.profilers.kernel_table import MIN_SHARE_PCT, joined, ms, pct, python_sites, sites_text
from perfloop.profilers.links import Activity
from perfloop.profilers.rows import Row, col, columns

FUSE_COLUMNS = columns(
    "pattern",
    "status",
    "confidence",
    "time_ms=Related time",
    "share_pct",
    joined("evidence_kernels", "Evidence kernels"),
    replace(sites_text("python_sites"), label="Current Python location"),
    col(
        "fused_paths=Candidate fused path",
        lambda row: "; ".join(f"{p['engine']}: {p['path']}" for p in row["fused_paths"]),
    ),
    "rationale",
)
UNMATCHED = "(no catalog pattern, or under 1%)"
CATALOG_PATH = Path(__file__).parent / "catalog" / "fuse_patterns.yaml"


class FusedPath(BaseModel):
    """Where a fused implementation of the pattern exists."""

    model_config = ConfigDict(extra="forbid")
    engine: Literal["perfloop", "vllm", "sglang", "trtllm", "flashinfer"]
    path: str = Field(min_length=3)


class Examples(BaseModel):
    """Kernel-name sequences the pattern must and must not match (replayed by the tests)."""

    model_config = ConfigDict(extra="forbid")
    match: list[str] = Field(min_length=1)
    no_match: list[str] = Field(min_length=1)


class FusePattern(BaseModel):
    """One catalog entry."""

    model_config = ConfigDict(extra="forbid")
    name: str
    rationale: str = Field(min_length=10)
    split: list[list[str]] = Field(min_length=1, description="Ordered keyword groups of the unfused pieces.")
    max_gap: int = Field(1, ge=0, description="Other kernels allowed between two consecutive pieces.")
    exclude: list[str] = Field(default_factory=list, description="Kernels with these keywords never match.")
    fused: list[str] = Field(default_factory=list, description="Keywords of the already-fused kernel.")
    fused_paths: list[FusedPath] = Field(min_length=1)
    min_share: float = Field(0.25, ge=0, description="Below this share (%) a split match is not reported.")
    likely_share: float = Field(
        3.0, ge=0, description="At or above this share (%) a split match is confirmed."
    )
    examples: Examples

    @field_validator("split", "fused", "exclude")
    @classmethod
    def _lowercase(cls, v: list) -> list:
        if v and isinstance(v[0], list):
            if any(not group for group in v):
                raise ValueError("every split group needs at least one keyword")
            return [[k.lower() for k in group] for group in v]
        return [k.lower() for k in v]


class FuseCatalog(BaseModel):
    """The whole catalog file."""

    model_config = ConfigDict(extra="forbid")
    version: int
    patterns: list[FusePattern] = Field(min_length=15)

    @field_validator("patterns")
    @classmethod
    def _unique(cls, v: list[FusePattern]) -> list[FusePattern]:
        names = [p.name for p in v]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate pattern names: {sorted(dupes)}")
        return v


@lru_cache(maxsize=4)
def load_catalog(path: Path = CATALOG_PATH) -> FuseCatalog:
    """Load and validate the fuse catalog."""
    return FuseCatalog.model_validate(yaml.safe_load(Path(path).read_text()))


def _hits(name: str, keywords: list[str]) -> bool:
    low = name.lower()
    return any(k in low for k in keywords)


def _masks(pattern: FusePattern, names: list[str]) -> list[int]:
    """Per activity: bit g set when its name matches split group g; -1 when excluded.

    Computed once per distinct name, so matching a long trace costs integer tests only.
    """
    memo: dict[str, int] = {}
    out = []
    for name in names:
        mask = memo.get(name)
        if mask is None:
            if _hits(name, pattern.exclude):
                mask = -1
            else:
                mask = sum(1 << g for g, group in enumerate(pattern.split) if _hits(name, group))
            memo[name] = mask
        out.append(mask)
    return out


def split_runs(pattern: FusePattern, acts: list[Activity], taken: set[int] | None = None) -> list[list[int]]:
    """Index runs (into acts) where the pattern's unfused pieces occur in order on one stream."""
    taken = taken if taken is not None else set()
    masks = _masks(pattern, [a.name for a in acts])
    streams: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(acts):
        streams[a.stream].append(i)
    runs: list[list[int]] = []
    for seq in streams.values():
        pos = 0
        while pos < len(seq):
            if masks[seq[pos]] > 0 and masks[seq[pos]] & 1:
                run, end = _match_at(pattern, masks, seq, pos, taken)
                if run:
                    runs.append(run)
                    taken.update(run)
                    pos = end
                    continue
            pos += 1
    return runs


def _match_at(
    pattern: FusePattern, masks: list[int], seq: list[int], pos: int, taken: set[int]
) -> tuple[list[int], int]:
    """The run starting exactly at seq[pos] and the position after it, or ([], pos).

    Excluded kernels (mask -1) never match but still count toward the allowed gap.
    """
    start = pos
    run: list[int] = []
    for g in range(len(pattern.split)):
        bit = 1 << g
        limit = 0 if g == 0 else pattern.max_gap
        found = None
        for j in range(pos, min(pos + limit + 1, len(seq))):
            i = seq[j]
            if masks[i] > 0 and masks[i] & bit and i not in taken:
                found = j
                break
        if found is None:
            return [], start
        run.append(seq[found])
        pos = found + 1
    return run, pos


def fuse_key(row: Row) -> str:
    """Identity of a fuse row: `pattern:status` (a pattern can be both fused and split)."""
    return f"{row['pattern']}:{row['status']}" if row["status"] else row["pattern"]


def fuse_table(acts: list[Activity], catalog: FuseCatalog | None = None, show_all: bool = False) -> list[Row]:
    """One row per (pattern, status) found; time no pattern claims forms the closing row."""
    catalog = catalog or load_catalog()
    total = sum(a.dur for a in acts)
    taken: set[int] = set()
    rows: list[tuple[int, Row]] = []
    for p in catalog.patterns:
        split = [i for run in split_runs(p, acts, taken) for i in run]
        fused_names = {n for n in {a.name for a in acts} if p.fused and _hits(n, p.fused)}
        fused = [i for i, a in enumerate(acts) if a.name in fused_names and i not in taken]
        taken.update(fused)
        for status, idx in (("fused", fused), ("split", split)):
            if idx:
                rows.append(_row(p, status, [acts[i] for i in idx], total))
    shown = [
        (ns, r)
        for ns, r in rows
        if show_all or (r["share_pct"] >= MIN_SHARE_PCT and r["confidence"] != "below threshold")
    ]
    rest = total - sum(ns for ns, _ in shown)
    closing = {
        "pattern": UNMATCHED,
        "status": "",
        "confidence": "",
        "time_ms": ms(rest),
        "share_pct": pct(rest, total),
        "evidence_kernels": [],
        "python_sites": [],
        "fused_paths": [],
        "rationale": "No source-backed fusion in the catalog matched this time.",
    }
    return [r for _, r in shown] + [closing]


def _row(p: FusePattern, status: str, matched: list[Activity], total: int) -> tuple[int, Row]:
    """(matched ns, row)."""
    t = sum(a.dur for a in matched)
    share = pct(t, total)
    if status == "fused" or share >= p.likely_share:
        confidence = "confirmed"
    elif share >= p.min_share:
        confidence = "candidate"
    else:
        confidence = "below threshold"
    by_name: dict[str, int] = defaultdict(int)
    for a in matched:
        by_name[a.name] += a.dur
    return t, {
        "pattern": p.name,
        "status": status,
        "confidence": confidence,
        "time_ms": ms(t),
        "share_pct": share,
        "evidence_kernels": sorted(by_name, key=lambda n: -by_name[n])[:4],
        "python_sites": python_sites(matched, 2),
        "fused_paths": [fp.model_dump() for fp in p.fused_paths],
        "rationale": p.rationale,
    }
