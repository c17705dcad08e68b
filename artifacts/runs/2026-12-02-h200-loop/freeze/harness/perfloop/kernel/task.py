"""A kernel task folder: the frozen contract (harness, rows, grid, tolerances, baseline) judging a candidate.

    TASK/
      task.yaml       this spec
      harness.py      the ABI: make_inputs(params, device, seed) -> dict of tensors; OUTPUTS; optional
                      roofline(params) -> (flops, bytes)
      baseline.py     a copy of the current kernel (lineage in task.yaml): kernel(**inputs) -> None
      rows.json       production rows (TaskRow), each naming the trace bucket it stands for
      grid.json       the canonical regression grid: a list of params
      ledger/         hash-chained events (written by `perfloop kernel run`)

Everything above `ledger/` is hashed when the task is frozen (its first run); a later change voids the
task. A candidate is a separate file passed to `perfloop kernel run --candidate`, loaded and called
exactly like the baseline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from perfloop.ledger.kernel_records import TaskRow

FROZEN_FILES = ("task.yaml", "harness.py", "baseline.py", "rows.json", "grid.json")


class TaskError(ValueError):
    """The task folder is missing something or says something invalid."""


class Lineage(BaseModel):
    """Where the baseline was copied from."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(description="File the baseline kernel was copied from.")
    commit: str = Field(description="Commit of that file.")


class Tolerance(BaseModel):
    """Elementwise |cand - base| <= atol + rtol * |base|."""

    model_config = ConfigDict(extra="forbid")
    atol: float = Field(1e-2, ge=0)
    rtol: float = Field(1e-2, ge=0)


class Timing(BaseModel):
    """Interleaved A/B: `trials` pairs, each side's inner loop amplified to at least `min_inner_ms`."""

    model_config = ConfigDict(extra="forbid")
    trials: int = Field(7, ge=3)
    iters: int = Field(200, ge=1)
    warmup: int = Field(20, ge=0)
    min_inner_ms: float = Field(1.0, gt=0)


class Arbiter(BaseModel):
    """The end-to-end A/B inside the engine: a command printing one JSON object, run per side."""

    model_config = ConfigDict(extra="forbid")
    command: str = Field(description="Shell command; its last stdout line is a JSON object with `metric`.")
    metric: str
    candidate_env: dict[str, str] = Field(description="Environment that turns the candidate dispatch on.")
    baseline_env: dict[str, str] = Field(default_factory=dict)
    runs: int = Field(3, ge=1, description="Runs per side, interleaved ABBA.")
    min_ratio: float = Field(1.0, description="Candidate/baseline median ratio needed to confirm.")


class TaskSpec(BaseModel):
    """`task.yaml`."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    baseline: Lineage
    tolerance: Tolerance = Tolerance()
    timing: Timing = Timing()
    min_speedup: float = Field(1.03, description="A bucket dispatches to the candidate only above this.")
    build_env: dict[str, str] = Field(default_factory=dict, description="Set for both sides alike.")
    ncu_kernel: str = Field("", description="Kernel-name regex for `perfloop kernel ncu`.")
    arbiter: Arbiter | None = None


class Task(BaseModel):
    """A loaded task folder."""

    root: Path
    spec: TaskSpec
    rows: list[TaskRow]
    grid: list[dict[str, Any]]

    @property
    def ledger_root(self) -> Path:
        """Where the task's ledger lives."""
        return self.root / "ledger"


def load_task(root: Path) -> Task:
    """Read and validate a task folder; TaskError names the first problem."""
    root = Path(root).resolve()
    for name in FROZEN_FILES:
        if not (root / name).is_file():
            raise TaskError(f"task: {root / name} is missing (a task needs {', '.join(FROZEN_FILES)})")
    try:
        spec = TaskSpec.model_validate(yaml.safe_load((root / "task.yaml").read_text()))
        rows = [TaskRow.model_validate(r) for r in json.loads((root / "rows.json").read_text())]
        grid = json.loads((root / "grid.json").read_text())
    except (ValidationError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise TaskError(f"task: {root} is invalid: {str(exc).splitlines()[0]}") from exc
    if not rows:
        raise TaskError(f"task: {root / 'rows.json'} holds no rows")
    if not isinstance(grid, list) or not all(isinstance(g, dict) for g in grid):
        raise TaskError(f"task: {root / 'grid.json'} must be a list of parameter objects")
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        raise TaskError("task: rows.json repeats a row id")
    return Task(root=root, spec=spec, rows=rows, grid=grid)
