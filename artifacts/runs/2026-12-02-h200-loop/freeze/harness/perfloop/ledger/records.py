"""Every record the ledger writes: pydantic models, each carrying a schema version."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
GENESIS = "0" * 64

Verdict = Literal["ADVANCED", "STALLED", "REGRESSED", "REJECTED"]
GapPosition = Literal["behind", "tied", "ahead"]
Severity = Literal["blocking", "major", "minor"]


class Record(BaseModel):
    """Base of every on-disk record: strict fields and a schema version."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION


class Event(Record):
    """One line of `events.jsonl`; `prev_sha256` is the SHA-256 of the previous raw line."""

    seq: int = Field(ge=0)
    ts: float
    kind: str = Field(description="transition, record, note, ...")
    state: str = Field(description="Loop state after this event.")
    round: int = Field(0, ge=0)
    data: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict, description="Path under the run root -> SHA-256.")
    prev_sha256: str


class LedgerAnchor(Record):
    """The ledger head as committed in the target repo (see `perfloop.ledger.anchor`)."""

    run_id: str
    events: int = Field(ge=1, description="Events in the ledger when anchored.")
    sha256: str = Field(description="SHA-256 of the last anchored line.")
    state: str = Field(description="Loop state after the anchored line.")
    round: int = Field(0, ge=0)
    branch_head: str = Field(description="Loop branch head when anchored.")
    final: bool = Field(False, description="The run ended here: no later line is legitimate.")


class Manifest(Record):
    """`manifest.json`: what this run is and where it ran."""

    run_id: str
    created: float
    perfloop_version: str
    spec: dict[str, Any] = Field(description="The goal spec the run started from (GoalSpec.schema.json).")
    environment: dict[str, Any]
    target_repo: str
    loop_branch: str
    base_commit: str


class FreezeRecord(Record):
    """What FREEZE pinned; a later change to any of these voids the comparison."""

    workload_fingerprint: str = Field(description="Fingerprint of the workload spec as written in the goal.")
    measured_workload_fingerprint: str | None = Field(
        None, description="Fingerprint the benchmark measured (vocabulary resolved from the model)."
    )
    bench_code_sha256: str
    tolerance_sha256: str
    base_commit: str
    noise_band: float = Field(description="Relative half-width of the A/A interval (floored).")
    aa_median_ratio: float
    aa_ci_low: float
    aa_ci_high: float
    reference_outputs_sha256: str | None = None


class MetricComparison(Record):
    """One metric of an interleaved A/B run: the B/A ratio with its bootstrap interval."""

    metric: str
    a_median: float
    b_median: float
    median_ratio: float
    ci_low: float
    ci_high: float
    higher_is_better: bool


class BenchRecord(Record):
    """An A/B measurement stored in a round (A = baseline side, B = the side under test)."""

    label: str = Field(description="aa, vs-peer, revalidate")
    a_name: str
    b_name: str
    a_launch: str
    b_launch: str
    workload_fingerprint: str
    trials: int = Field(description="Pairs measured (sequential trials stop when decisive).")
    stop_reason: str = Field("fixed", description="fixed, decisive, budget or unprovable.")
    metrics: dict[str, MetricComparison]
    requested_output_tokens: int
    achieved_output_tokens_a: int
    achieved_output_tokens_b: int
    result_files: list[str] = Field(default_factory=list)


class GapRecord(Record):
    """The gap decision of one round, made from the interval and not from a point."""

    metric: str
    peer: str
    median_ratio: float
    ci_low: float
    ci_high: float
    threshold: float
    position: GapPosition
    objective_met: bool
    reason: str


class ProfileRecord(Record):
    """PROFILE output: the trace and the analysis tables at the workload's shapes."""

    trace: str
    tables: dict[str, dict[str, list[dict[str, Any]]]]
    engine_stats: dict[str, Any] = Field(default_factory=dict)


class PatchRecord(Record):
    """A candidate: the commit, its diff, why it was proposed and the rows it cites."""

    patcher: str
    proposed: bool
    reason: str
    commit: str | None = None
    parent: str | None = None
    rule: str | None = None
    rationale: str = ""
    cited_rows: list[str] = Field(default_factory=list)
    files_changed: list[str] = Field(default_factory=list)
    diff_file: str | None = None


class ValidationRecord(Record):
    """VALIDATE: the correctness command's result on the candidate's worktree."""

    command: str
    returncode: int
    passed: bool
    checks: dict[str, bool] = Field(default_factory=dict)
    log_file: str


class GateResult(Record):
    """One mechanical reviewer gate with the evidence it looked at."""

    gate: str
    passed: bool
    evidence: str


class ReviewRecord(Record):
    """REVIEW: every gate, the verdict and what the loop does next."""

    gates: list[GateResult]
    verdict: Verdict
    why: str = Field(
        "", description="The failing gate and metric, e.g. 'no_regression (p99_ttft_ms x1.440 > 1.250)'."
    )
    rejected_by: list[str] = Field(default_factory=list)
    accepted: bool


class RoundSummary(Record):
    """RECORD: the round in one record; the report reads these."""

    round: int
    gap: GapRecord | None
    patch: PatchRecord | None
    verdict: Verdict | None
    why: str = Field("", description="The verdict's reason: failing gate and metric.")
    accepted: bool
    rejected_by: list[str] = Field(default_factory=list)
    branch_head: str
    research: bool = False
    outcome: str


class ValidationReference(Record):
    """Frozen greedy reference outputs of the base commit on fixed prompts."""

    model: str
    prompts: list[list[int]]
    max_tokens: int
    outputs: list[list[int]]


class CorrectnessReport(Record):
    """What the bundled engine's correctness command prints: each check and its outcome."""

    passed: bool
    checks: dict[str, bool]
    details: dict[str, str] = Field(default_factory=dict)


class Attempt(Record):
    """`attempt.json`: the state a driver process is running (left behind when it is killed)."""

    state: str
    round: int = 0
    pid: int
    started: float


class LoopState(Record):
    """The resumable position of the state machine (carried by every transition event)."""

    state: str
    round: int = 0
    branch_head: str
    best_commit: str
    nonadvancing: int = 0
    research_next: bool = False
    pending_commit: str | None = None
    reason: str = ""
    started: float
    tried_rules: list[str] = Field(default_factory=list)


# API spend of model-backed patchers and reviewers.


class TokenUsage(BaseModel):
    """Token counts as the Messages API reports them in `usage` (summed over calls)."""

    model_config = ConfigDict(extra="forbid")
    input_tokens: int = Field(0, ge=0, description="Uncached input tokens.")
    output_tokens: int = Field(0, ge=0)
    cache_creation_input_tokens: int = Field(0, ge=0, description="Input tokens written to the cache.")
    cache_read_input_tokens: int = Field(0, ge=0, description="Input tokens read from the cache.")

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
        )


class RunSpend(Record):
    """API spend of a run so far, summed from its rounds' agent and model-review records."""

    usage: TokenUsage = Field(default_factory=TokenUsage)
    usd: float = 0.0


class AgentRecord(Record):
    """`agent.json`: one round of the agent patcher, for the ledger."""

    model: str
    turns: int = Field(description="API responses received this round.")
    calls: list[TokenUsage] = Field(description="Usage of each response, as the API reported it.")
    usage: TokenUsage = Field(description="Sum of `calls`.")
    usd: float = Field(description="Estimated cost of `calls`, each priced on its own (pricing.py).")
    prices_as_of: str
    wall_s: float
    stop: str = Field(
        description="finished, gave_up, turn_cap, output_token_cap, usd_cap, refusal, interrupted, ..."
    )
    detail: str
    tool_calls: dict[str, int] = Field(default_factory=dict)
    refusals: list[str] = Field(default_factory=list, description="Tool calls the sandbox refused.")
    transcript_file: str
    resumed_calls: int = Field(0, description="Calls of an interrupted attempt of this round, in `calls`.")


class ModelFinding(BaseModel):
    """One finding of the model reviewer."""

    severity: Severity
    title: str
    evidence: str = Field(description="Which artifact shows it (path, diff hunk, table row).")


class ModelReviewRecord(Record):
    """`model_review.json`: the model's verdict, or why there is none, with its cost."""

    model: str
    verdict: Verdict | None
    summary: str = ""
    findings: list[ModelFinding] = Field(default_factory=list)
    error: str | None = Field(None, description="Set when no valid review was had; the gate then fails.")
    usage: TokenUsage = Field(default_factory=TokenUsage)
    usd: float = 0.0
    prices_as_of: str = Field(description="Date of the price table the cost was estimated with.")
    wall_s: float = 0.0
    read: list[str] = Field(
        default_factory=list, description="Run-relative artifacts the prompt was built from."
    )


RECORD_MODELS: list[type[Record]] = [
    Event,
    LedgerAnchor,
    Manifest,
    FreezeRecord,
    MetricComparison,
    BenchRecord,
    GapRecord,
    ProfileRecord,
    PatchRecord,
    ValidationRecord,
    GateResult,
    ReviewRecord,
    RoundSummary,
    ValidationReference,
    CorrectnessReport,
    Attempt,
    LoopState,
    TokenUsage,
    RunSpend,
    AgentRecord,
    ModelFinding,
    ModelReviewRecord,
]
