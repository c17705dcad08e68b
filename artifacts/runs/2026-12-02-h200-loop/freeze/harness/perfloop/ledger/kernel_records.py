"""Records of a kernel task: production rows, timed A/B rows, lineage, NCU digests, dispatch, arbiter."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from perfloop.ledger.records import Record

LineageStatus = Literal["KEEP", "REJECT", "SUPERSEDED"]
Bound = Literal["memory", "compute", "latency", "unknown"]


class ProductionRow(Record):
    """One shape bucket of a kernel as a real workload launched it (from a `record_shapes` trace)."""

    bucket: str = Field(description="Stable id: stage/kernel/grid/dims.")
    stage: str
    kernel: str
    cpu_op: str = ""
    input_dims: str = Field("", description="Shapes of the launching op's inputs, as the trace records them.")
    grid: list[int] = Field(default_factory=list)
    block: list[int] = Field(default_factory=list)
    site: str = ""
    calls: int
    device_us: float = Field(description="Total device time of this bucket in the trace.")
    share_pct: float = Field(description="Share of the stage's device time.")


class TaskRow(Record):
    """A row the task times and checks: parameters the harness turns into inputs, and where it came from."""

    id: str
    params: dict[str, Any]
    bucket: str | None = Field(None, description="The production bucket it stands for (None: grid only).")
    weight: float = Field(1.0, description="Unused by the headline (equal-weight geomean); kept for reading.")


class CheckResult(Record):
    """One correctness check on one row or grid point."""

    check: str = Field(description="poison, nan_inf, match, graph_replay, graph_inputs, fallback")
    row: str
    passed: bool
    detail: str = ""


class CorrectnessRecord(Record):
    """Every check of one candidate; `passed` only when all passed."""

    passed: bool
    checks: list[CheckResult]
    failed: list[str] = Field(default_factory=list, description="`check:row` of each failed check.")


class BenchRow(Record):
    """One row of `benchmark.csv`: a shape timed interleaved, baseline vs candidate."""

    utc: str
    host: str
    gpu: str
    row: str
    shape: str
    baseline_median_us: float
    candidate_median_us: float
    speedup: float
    speedup_low: float = Field(description="Slowest trial-pair ratio (a conservative bound).")
    speedup_high: float
    trials: int
    iters: int
    warmup: int
    cand_src_sha16: str
    command: str
    gpu_idle_before: float | None = Field(None, description="GPU utilisation % before timing (None: no GPU).")
    gpu_idle_after: float | None = None


class LineageRecord(Record):
    """One line of `solutions.jsonl`: a candidate, its parent and what became of it."""

    id: str
    parent: str
    direction: str
    src_sha16: str
    build: dict[str, str]
    dispatch_gate: str
    correctness: str
    benchmark: str
    status: LineageStatus
    evidence_files: list[str] = Field(default_factory=list)
    gates_failed: list[str] = Field(default_factory=list)


class NcuDigest(Record):
    """What Nsight Compute says of one kernel launch, read by the kernel's character."""

    side: str
    row: str
    kernel: str
    duration_us: float | None = None
    dram_throughput_pct: float | None = None
    l2_throughput_pct: float | None = None
    sm_busy_pct: float | None = None
    tensor_pipe_pct: float | None = None
    achieved_occupancy_pct: float | None = None
    theoretical_occupancy_pct: float | None = None
    registers_per_thread: float | None = None
    top_stalls: list[str] = Field(default_factory=list)
    bound: Bound = "unknown"
    reading: str = Field("", description="One sentence: what limits this kernel and what would move it.")
    metrics: dict[str, str] = Field(default_factory=dict, description="Every raw metric read.")


class DispatchRow(Record):
    """One bucket of the per-shape dispatch table."""

    bucket: str
    baseline_us: float
    candidate_us: float
    speedup: float
    active_bound: str
    decision: Literal["candidate", "baseline"]
    reason: str


class ArbiterRecord(Record):
    """The end-to-end A/B that confirms (or not) a kernel win inside the engine."""

    command: str
    metric: str
    baseline: list[float]
    candidate: list[float]
    ratio: float = Field(description="Median candidate / median baseline (higher is better for throughput).")
    confirmed: bool


KERNEL_RECORD_MODELS: list[type[Record]] = [
    ProductionRow,
    TaskRow,
    CorrectnessRecord,
    BenchRow,
    LineageRecord,
    NcuDigest,
    DispatchRow,
    ArbiterRecord,
]
