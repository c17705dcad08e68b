"""The goal spec: what to make faster, against whom, on which workload, within which budgets."""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from perfloop.bench.workloads import WorkloadSpec
from perfloop.loop.patchers.registry import patcher_entry

DEFAULT_PROTECTED = ["**/bench/**", "**/*bench*", "**/*workload*", "**/*timing*", "**/*timer*"]


def result_metrics() -> list[str]:
    """Every metric a benchmark result has (vLLM key names): what `metric`, SLOs and tolerances may name."""
    from perfloop.bench.result import BenchResult, _Header

    # Counts and the duration are facts of the run, not rates or latencies one could improve.
    counts = {"completed", "failed", "duration", "total_input_tokens", "total_output_tokens"}
    skip = set(_Header.model_fields) | counts | {"max_concurrent_requests", "sglang_compat", "perfloop"}
    return sorted(name for name in BenchResult.model_fields if name not in skip)


def _check_metric(name: str) -> str:
    valid = result_metrics()
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"{name!r} is not a benchmark metric; {hint}valid: {', '.join(valid)}")
    return name


def _check_launch(launch: str) -> str:
    from perfloop.bench.targets import parse_target

    try:
        parse_target(launch)
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix("launch: ")) from exc
    return launch


MetricName = Annotated[str, AfterValidator(_check_metric)]


class SpecError(ValueError):
    """A goal spec that cannot run; the message names the bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetSpec(_Strict):
    """The engine under optimisation: a git repo, how to launch it, what a patch may touch."""

    repo: Path = Field(
        description="Git repository of the target (relative: to the spec file's folder); its "
        "checked-out branch is never touched."
    )
    launch: str = Field(
        "",
        description="Launch spec of the target: a shell command with {port} (run it from {worktree}, "
        "the candidate's checkout, to measure code changes), engine:FLAGS, or docker:IMAGE.",
    )
    engine_config_file: str | None = Field(
        None, description="Path in the repo of a YAML EngineConfig; the bundled engine runs it in process."
    )
    allowed_paths: list[str] = Field(description="Globs a patch may touch, relative to the repo root.")
    protected_paths: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROTECTED),
        description="Globs no patch may touch: benchmark, workload and timing code.",
    )
    correctness: str = Field(
        description="Shell command run in the candidate's worktree with the frozen harness ({worktree} and "
        "{reference} are replaced); exit 0 = correct."
    )
    reference_command: str | None = Field(
        None,
        description="Shell command run once at FREEZE in the base worktree to write {reference}; "
        "{workload} is the frozen workload's JSON (to sample reference prompts from).",
    )
    gpu_cmd: str | None = Field(
        None,
        description="Command running each GPU phase as a batch job ({bundle}, {out}, {archive}) or `manual`.",
    )
    correctness_on_gpu: bool = Field(
        True,
        description="With gpu_cmd: run the correctness and reference commands as batch jobs too; false: on "
        "this machine (one job fewer at FREEZE and per candidate; measured_outputs still checks the "
        "measured run's own tokens from the GPU).",
    )

    @field_validator("allowed_paths")
    @classmethod
    def _some_paths(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one allowed path is needed, or no patch could ever pass review")
        return value


class PeerSpec(_Strict):
    """A competitor: launched and measured interleaved with the target."""

    name: str = Field(description="Short name shown in gaps and reports.")
    launch: str = Field(
        description="Launch spec: http(s) URL of a running server, shell command with {port}, "
        "engine:FLAGS, hf:MODEL or docker:IMAGE."
    )

    @field_validator("launch")
    @classmethod
    def _parses(cls, value: str) -> str:
        return _check_launch(value)


class ObjectiveSpec(_Strict):
    """When the goal is met."""

    kind: Literal["beat_peer", "reach_value", "roofline_fraction"] = Field(
        "beat_peer",
        description="beat_peer: lead the best peer; reach_value: a metric value; "
        "roofline_fraction: a share of the roofline.",
    )
    margin: float = Field(0.0, ge=0.0, description="beat_peer: required lead, e.g. 0.05 = 5%.")
    value: float | None = Field(None, description="reach_value: the metric value to reach.")
    roofline_value: float | None = Field(None, gt=0, description="roofline_fraction: the roofline metric.")
    fraction: float = Field(0.8, gt=0, le=1, description="roofline_fraction: share of the roofline to reach.")


class BudgetSpec(_Strict):
    """Hard stops: no loop runs forever."""

    max_rounds: int = Field(6, ge=1, description="Rounds before BUDGET_LIMITED.")
    max_wall_s: float = Field(3600.0, gt=0, description="Wall seconds before BUDGET_LIMITED.")
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
    stall_after: int = Field(3, ge=1, description="Non-advancing rounds that end the run NO_PROGRESS.")


class Tolerances(_Strict):
    """The tolerance table, frozen at FREEZE."""

    other_metrics: dict[MetricName, float] = Field(
        default_factory=lambda: {"p99_ttft_ms": 0.25, "p99_tpot_ms": 0.25},
        description="Lower-is-better metrics and the relative regression each may show.",
    )

    min_noise_band: float = Field(0.01, ge=0, description="Floor of the A/A noise band.")


class MeasureSpec(_Strict):
    """How much measuring each comparison gets."""

    trials: int = Field(3, ge=1, description="Interleaved trials per side before the first decision check.")
    aa_trials: int = Field(3, ge=1, description="Trials per side of the A/A run before its first check.")
    max_trials: int = Field(
        3, ge=2, description="Trial budget per comparison: pairs are added until decisive or this is spent."
    )
    trial_seconds: float = Field(
        0.0, ge=0, description="Measured seconds per trial and side: a short run is repeated (0: one run)."
    )
    profile_requests: int = Field(8, ge=1, description="Requests of the workload the profiler replays.")
    profile_steps: int = Field(
        64, ge=1, description="Engine steps the profiler records (fewer: a smaller trace, a shorter PROFILE)."
    )
    torch_threads: int | None = Field(None, ge=1, description="torch threads of in-process engines (CPU).")
    max_concurrency: int | None = Field(None, ge=1, description="Requests in flight (None: all at once).")


class AccuracySpec(_Strict):
    """The `accuracy` gate: a task eval and logprob consistency at FREEZE (baseline) and VALIDATE."""

    items: str = Field(
        "builtin",
        description="`builtin` (the shipped 84 items) or a JSONL of {id, context, choices, answer} "
        "(relative: to the spec file's folder).",
    )
    max_items: int | None = Field(
        None, ge=1, description="An evenly spaced subset of this many items, the same on every side."
    )
    dtype: str = Field("float32", description="Compute dtype of the target: the thresholds' minimums.")
    floor: float = Field(0.5, ge=0, le=1, description="A baseline under this accuracy BLOCKs the run.")
    tolerance: float | None = Field(
        0.05, ge=0, description="Largest accepted accuracy drop; None: the baseline interval's half-width."
    )
    threshold_factor: float = Field(
        10.0, ge=1, description="Consistency threshold = max(dtype minimum, this x the baseline's max)."
    )
    prompts: int = Field(4, ge=1, description="Seeded consistency prompts.")
    prompt_len: int = Field(48, ge=2, description="Tokens per consistency prompt.")
    tokens: int = Field(16, ge=1, description="Tokens generated per consistency prompt.")
    vocab: int = Field(32000, gt=100, description="Consistency prompt ids are drawn from [100, vocab).")

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        from perfloop.eval.consistency import THRESHOLDS

        if value not in THRESHOLDS:
            raise ValueError(f"{value!r} is not one of {', '.join(THRESHOLDS)}")
        return value


class GoalSpec(_Strict):
    """A whole goal, from flags or `--spec goal.yaml`."""

    objective_text: str = Field(
        "Make the target faster than the best peer on this workload.",
        description="The goal in words; heads the prompt and the report.",
    )
    target: TargetSpec = Field(description="The engine under optimisation.")
    peers: list[PeerSpec] = Field(
        default_factory=list, description="Competitors; none: the target's base commit is the peer."
    )
    workload: WorkloadSpec = Field(description="The benchmark workload, frozen at FREEZE.")
    metric: MetricName = Field(
        "output_throughput", description="Benchmark result metric the objective is about (vLLM key names)."
    )
    slos: dict[MetricName, float] = Field(
        default_factory=dict, description="Metric -> upper bound, e.g. p99_ttft_ms."
    )
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec, description="When the goal is met.")
    budgets: BudgetSpec = Field(default_factory=BudgetSpec, description="Hard stops.")
    stop: StopRules = Field(default_factory=StopRules, description="Gap threshold and stall rules.")
    tolerances: Tolerances = Field(default_factory=Tolerances, description="Regression tolerances.")
    measure: MeasureSpec = Field(default_factory=MeasureSpec, description="Trials and measuring settings.")
    patcher: str = Field(
        "playbook",
        description="Who proposes patches: a name from perfloop.loop.patchers.registry "
        "(built in: playbook, external, anthropic).",
    )
    agent: AgentSpec = Field(default_factory=AgentSpec, description="Model settings of API patchers.")
    accuracy: AccuracySpec | None = Field(
        None, description="The accuracy gate (task eval + logprob consistency); None: not checked."
    )
    artifact_root: Path = Field(Path("artifacts"), description="Where run folders are written.")
    run_id: str | None = Field(None, description="Run id; default a timestamp.")

    @field_validator("peers")
    @classmethod
    def _unique_peers(cls, value: list[PeerSpec]) -> list[PeerSpec]:
        names = [p.name for p in value]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"peer name {dup!r} is used twice; names must be unique")
        return value

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
        try:
            entry = patcher_entry(self.patcher)
        except ValueError as exc:
            raise SpecError(str(exc)) from exc
        try:
            if self.target.launch:
                _check_launch(self.target.launch.replace("{worktree}", str(self.target.repo)))
        except ValueError as exc:
            raise SpecError(f"target.launch: {exc}") from exc
        self._check_paths()
        self._check_items()
        uses_api = entry.uses_api or self.agent.review_model
        if uses_api and self.budgets.max_api_usd <= 0:
            raise SpecError(
                "budgets.max_api_usd: the anthropic patcher and reviewer need a spend cap (--max-usd)"
            )
        return self

    def _check_paths(self) -> None:
        repo = self.target.repo
        if not (repo / ".git").exists():
            raise SpecError(f"target.repo: {str(repo)!r} is not a git repository (no .git)")
        config = self.target.engine_config_file
        if config and not (repo / config).is_file():
            raise SpecError(f"target.engine_config_file: {config!r} is not a file in {repo}")

    def _check_items(self) -> None:
        from perfloop.eval.items import load_items

        if self.accuracy is None or self.accuracy.items == "builtin":
            return
        try:
            load_items(Path(self.accuracy.items))
        except (OSError, ValueError) as exc:
            raise SpecError(f"accuracy.items: {str(exc).splitlines()[0]}") from exc

    def tolerance_sha256(self) -> str:
        """Hash of the tolerance table, the stop rules and the measurement settings (frozen)."""
        doc = {
            "tolerances": self.tolerances.model_dump(),
            "stop": self.stop.model_dump(),
            "measure": self.measure.model_dump(),
        }
        if self.accuracy is not None:  # only when set: the hashes of runs without it stay as they were
            doc["accuracy"] = self.accuracy.model_dump()
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def load_spec(path: Path) -> GoalSpec:
    """Read a YAML goal spec; errors name the bad field. A relative target.repo is relative to the file."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a goal spec is a YAML mapping (see examples/)")
    repo = (data.get("target") or {}).get("repo") if isinstance(data.get("target"), dict) else None
    if isinstance(repo, str) and not Path(repo).expanduser().is_absolute():
        data["target"]["repo"] = str((path.parent / repo).resolve())
    items = data["accuracy"].get("items") if isinstance(data.get("accuracy"), dict) else None
    if isinstance(items, str) and items != "builtin" and not Path(items).expanduser().is_absolute():
        data["accuracy"]["items"] = str((path.parent / items).resolve())
    return parse_spec(data)


def parse_spec(data: dict[str, Any]) -> GoalSpec:
    """Validate a spec dict; the first error names its field path."""
    try:
        return GoalSpec.model_validate(data).check()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise SpecError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from exc
