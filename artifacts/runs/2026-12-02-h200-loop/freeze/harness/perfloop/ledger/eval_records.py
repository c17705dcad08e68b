"""Records of the accuracy gates: a task eval's items, a paired comparison, logprob consistency."""

from __future__ import annotations

from pydantic import Field

from perfloop.ledger.records import Record


class ItemResult(Record):
    """One item as scored: the loglikelihood of each choice, the choice taken, right or wrong."""

    id: str
    prompt_hash: str
    scores: list[float]
    pred: int
    answer: int
    correct: bool


class TaskEvalRecord(Record):
    """A task eval of one target: accuracy with its 95 % Wilson interval, and every item."""

    target: str
    items: int
    correct: int
    accuracy: float
    low: float
    high: float
    results: list[ItemResult]


class PairedComparison(Record):
    """Candidate vs baseline on the same items (matched by id and prompt hash)."""

    items: int
    baseline_accuracy: float
    candidate_accuracy: float
    drop: float = Field(description="baseline - candidate accuracy.")
    correct_to_incorrect: list[str]
    incorrect_to_correct: list[str]
    tolerance: float
    max_score_drift: float = Field(description="Largest |candidate - baseline| loglikelihood of any choice.")
    drift_tolerance: float
    passed: bool
    reason: str


class ConsistencyCheck(Record):
    """One comparison of logprobs of the same tokens from two paths (decode vs prefill, alone vs batch,
    cold vs prefix-cache hit)."""

    check: str
    tokens: int
    max_abs_diff: float
    mean_abs_diff: float
    p99_abs_diff: float
    diverged: int = Field(0, description="Sequences whose greedy tokens differed (compared up to there).")
    threshold: float
    passed: bool


class ConsistencyRecord(Record):
    """Dataset-free logprob consistency of one target."""

    target: str
    prompts: int
    tokens_per_prompt: int
    checks: list[ConsistencyCheck]
    passed: bool


class AccuracyRun(Record):
    """One side's accuracy phase in the loop: the task eval and the consistency checks through its
    served OpenAI API, and the wall time each part added."""

    side: str
    launch: str
    task: TaskEvalRecord
    consistency: ConsistencyRecord
    launch_s: float = Field(description="Starting the server until healthy.")
    task_s: float = Field(description="Scoring every item.")
    consistency_s: float = Field(description="The three consistency checks.")


class AccuracyFreeze(Record):
    """What FREEZE pins for the `accuracy` gate: the baseline's run and the bars every candidate meets."""

    baseline: AccuracyRun
    floor: float
    tolerance: float = Field(description="Largest accepted accuracy drop (absolute).")
    drift_tolerance: float = Field(description="Largest accepted move of any choice's loglikelihood.")
    thresholds: dict[str, float] = Field(description="Check -> largest accepted max |delta logprob|.")
    max_diverged: dict[str, int] = Field(description="Check -> greedy divergences the baseline had itself.")


EVAL_RECORD_MODELS: list[type[Record]] = [
    ItemResult,
    TaskEvalRecord,
    PairedComparison,
    ConsistencyCheck,
    ConsistencyRecord,
    AccuracyRun,
    AccuracyFreeze,
]
