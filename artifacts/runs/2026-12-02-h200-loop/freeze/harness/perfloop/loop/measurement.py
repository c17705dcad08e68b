"""How the loop measures: the `Backend` protocol and the sides it compares.

The loop owns timing-free orchestration; numbers come only from the benchmark and the
profiler, run in fresh processes from each candidate's worktree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from perfloop.bench.ab import Until
from perfloop.ledger.records import BenchRecord, ProfileRecord
from perfloop.loop.spec import GoalSpec


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a name and the launch spec of exactly the code to measure."""

    name: str
    launch: str
    tree: Path | None = None


class Backend(Protocol):
    """Measurement services the loop calls."""

    def ab(
        self, a: Side, b: Side, spec: GoalSpec, trials: int, label: str, out_dir: Path, until: Until = None
    ) -> BenchRecord:
        """Interleaved A/B on the frozen workload; ratios are B/A with bootstrap intervals.

        `until`: add pairs after `trials` until the interval is decisive or the budget is spent.
        """
        ...

    def profile(self, side: Side, spec: GoalSpec, out_dir: Path) -> ProfileRecord:
        """Capture a trace of `side` at the workload's shapes and analyse it into tables."""
        ...

    def environment(self) -> dict[str, object]:
        """The machine and software the run measures on."""
        ...
