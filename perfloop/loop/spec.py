"""The goal spec: what to make faster, against whom, on which workload, within which budgets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from perfloop.bench.workloads import WorkloadSpec

DEFAULT_PROTECTED = ["**/bench/**", "**/*bench*", "**/*workload*", "**/*timing*", "**/*timer*"]


class SpecError(ValueError):
    """A goal spec that cannot run; the message names the bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetSpec(_Strict):
    """The engine under optimisation: a git repo, how to launch it, what a patch may touch."""

    repo: Path = Field(description="Git repository of the target; its checked-out branch is never touched.")
    launch: str = Field(
        "",
        description="Launch spec: {port} command, engine:, hf: or docker: spec; {worktree} is replaced.",
    )
    engine_config_file: str | None = Field(
        None, description="Path in the repo of a YAML EngineConfig; the bundled engine runs it in process."
    )
    allowed_paths: list[str] = Field(description="Globs a patch may touch, relative to the repo root.")
    protected_paths: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROTECTED),
        description="Globs no patch may touch: benchmark, workload and timing code.",
    )
    correctness: str = Field(description="Shell command run in the candidate's worktree; exit 0 = correct.")
    reference_command: str | None = Field(
        None, description="Shell command run once at FREEZE in the base worktree to write {reference}."
    )
    gpu_cmd: str | None = Field(
        None,
        description="Command running each GPU phase as a batch job ({bundle}, {out}, {archive}) or `manual`.",
    )

    @field_validator("allowed_paths")
    @classmethod
    def _some_paths(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one allowed path is needed, or no patch could ever pass review")
        return value


class PeerSpec(_Strict):
    """A competitor: launched and measured interleaved with the target."""

    name: str
    launch: str = Field(
        description="Launch spec: shell command with {port}, engine:FLAGS, hf:MODEL or docker:IMAGE."
    )


class ObjectiveSpec(_Strict):
    """When the goal is met."""

    kind: Literal["beat_peer", "reach_value", "roofline_fraction"] = "beat_peer"
    margin: float = Field(0.0, ge=0.0, description="beat_peer: required lead, e.g. 0.05 = 5%.")
    value: float | None = Field(None, description="reach_value: the metric value to reach.")
    roofline_value: float | None = Field(None, gt=0, description="roofline_fraction: the roofline metric.")
    fraction: float = Field(0.8, gt=0, le=1, description="roofline_fraction: share of the roofline to reach.")


class BudgetSpec(_Strict):
    """Hard stops: no loop runs forever."""

    max_rounds: int = Field(6, ge=1)
    max_wall_s: float = Field(3600.0, gt=0)
    max_api_usd: float = Field(0.0, ge=0, description="API spend cap for model-backed patchers.")


class AgentSpec(_Strict):
    """The `anthropic` patcher and the optional model reviewer (the spend cap is budgets.max_api_usd)."""

    model: str = Field("claude-sonnet-5-5", description="Patcher model; needs a row in loop/pricing.py.")
    max_turns: int = Field(40, ge=1, description="API responses per round; reaching it ends BUDGET_LIMITED.")
    max_output_tokens: int | None = Field(
        None, ge=1, description="Output tokens across the run's agent calls; None: only the USD cap."
    )
    review_model: str | None = Field(None, description="Model of the optional reviewer; None: gates only.")


class StopRules(_Strict):
    """Gap threshold and the stall rules."""

    gap_threshold: float = Field(
        0.01, ge=0, description="Behind only when the whole interval is this far below."
    )
    research_after: int = Field(2, ge=1, description="Non-advancing rounds that force a research round.")
    stall_after: int = Field(3, ge=1, description="Non-advancing rounds that end the run STALLED.")


class Tolerances(_Strict):
    """The tolerance table, frozen at FREEZE."""

    other_metrics: dict[str, float] = Field(
        default_factory=lambda: {"p99_ttft_ms": 0.25, "p99_tpot_ms": 0.25},
        description="Lower-is-better metrics and the relative regression each may show.",
    )
    min_noise_band: float = Field(0.01, ge=0, description="Floor of the A/A noise band.")


class MeasureSpec(_Strict):
    """How much measuring each comparison gets."""

    trials: int = Field(3, ge=1, description="Interleaved trials per side.")
    aa_trials: int = Field(3, ge=1, description="Trials per side of the A/A run.")
    profile_requests: int = Field(8, ge=1, description="Requests of the workload the profiler replays.")
    torch_threads: int | None = Field(None, ge=1, description="torch threads of in-process engines (CPU).")
    max_concurrency: int | None = Field(None, ge=1, description="Requests in flight (None: all at once).")


class GoalSpec(_Strict):
    """A whole goal, from flags or `--spec goal.yaml`."""

    objective_text: str = "Make the target faster than the best peer on this workload."
    target: TargetSpec
    peers: list[PeerSpec] = Field(default_factory=list)
    workload: WorkloadSpec
    metric: str = "output_throughput"
    slos: dict[str, float] = Field(
        default_factory=dict, description="Metric -> upper bound, e.g. p99_ttft_ms."
    )
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    budgets: BudgetSpec = Field(default_factory=BudgetSpec)
    stop: StopRules = Field(default_factory=StopRules)
    tolerances: Tolerances = Field(default_factory=Tolerances)
    measure: MeasureSpec = Field(default_factory=MeasureSpec)
    patcher: Literal["playbook", "external", "anthropic"] = "playbook"
    agent: AgentSpec = Field(default_factory=AgentSpec)
    artifact_root: Path = Path("artifacts")
    run_id: str | None = None

    def check(self) -> GoalSpec:
        """Cross-field checks that pydantic field validators cannot see."""
        if self.objective.kind == "beat_peer" and not self.peers:
            raise SpecError("peers: the beat_peer objective needs at least one peer")
        if self.objective.kind == "reach_value" and self.objective.value is None:
            raise SpecError("objective.value: the reach_value objective needs a value")
        if self.objective.kind == "roofline_fraction" and self.objective.roofline_value is None:
            raise SpecError("objective.roofline_value: the roofline_fraction objective needs it")
        if not self.target.launch and not self.target.engine_config_file:
            raise SpecError("target.launch: give a launch spec or target.engine_config_file")
        uses_api = self.patcher == "anthropic" or self.agent.review_model
        if uses_api and self.budgets.max_api_usd <= 0:
            raise SpecError(
                "budgets.max_api_usd: the anthropic patcher and reviewer need a spend cap (--max-usd)"
            )
        return self

    def tolerance_sha256(self) -> str:
        """Hash of the tolerance table, the stop rules and the measurement settings (frozen)."""
        doc = {
            "tolerances": self.tolerances.model_dump(),
            "stop": self.stop.model_dump(),
            "measure": self.measure.model_dump(),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def load_spec(path: Path) -> GoalSpec:
    """Read a YAML goal spec; errors name the bad field."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"--spec: cannot read {path}: {exc}") from exc
    return parse_spec(data or {})


def parse_spec(data: dict[str, Any]) -> GoalSpec:
    """Validate a spec dict; the first error names its field path."""
    try:
        return GoalSpec.model_validate(data).check()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise SpecError(f"{where}: {first['msg']}") from exc
