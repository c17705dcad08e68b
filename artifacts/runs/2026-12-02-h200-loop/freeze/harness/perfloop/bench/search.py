"""Bounded, resumable search over a target's launch flags.

`space.yaml`:

    launch: "engine:--model preset:tiny-qwen3"      # or a server command with {port}
    workload: {kind: random, num_prompts: 32, input_len: 64, output_len: 32}
    bench: {max_concurrency: 16, torch_threads: 1}   # any BenchSpec field
    metric: output_throughput                       # *_ms metrics are minimised
    knobs:                                          # flag -> values; true/false = --x / --no-x
      --max-num-seqs: [4, 64]
      --enable-prefix-caching: [false]
    combine_top: 2                                  # best values of the top knobs, combined
    max_trials: 12
    trial_timeout_s: 600

Order: the baseline (no knob), then one knob value at a time, then combinations of the
best values of the knobs that beat the baseline. Every trial runs the benchmark
in a fresh process and is appended to `results.jsonl` keyed by sha256(launch, flags,
workload fingerprint, bench options), so a rerun skips finished trials. Failed, OOM and timed-out
trials stay in the table with that status and no metrics, never zeros.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from perfloop.bench.ab import higher_is_better
from perfloop.bench.result import BenchResult
from perfloop.bench.runner import BenchSpec, resolve_workload
from perfloop.bench.targets import parse_target
from perfloop.bench.workloads import WorkloadSpec

Status = Literal["ok", "failed", "oom", "timeout"]


class SearchSpace(BaseModel):
    """The parsed space.yaml."""

    model_config = ConfigDict(extra="forbid")

    launch: str
    workload: WorkloadSpec
    bench: dict[str, Any] = Field(default_factory=dict)
    metric: str = "output_throughput"
    knobs: dict[str, list[Any]]
    combine_top: int = Field(2, ge=0)
    max_trials: int = Field(12, ge=1)
    trial_timeout_s: float = Field(600.0, gt=0)


class Trial(BaseModel):
    """One row of results.jsonl."""

    model_config = ConfigDict(extra="forbid")

    key: str
    flags: dict[str, Any]
    launch: str
    status: Status
    metric: str
    value: float | None
    metrics: dict[str, float | None] | None
    error: str | None = None
    result_file: str | None = None


def load_space(path: Path) -> SearchSpace:
    """Read and validate space.yaml, naming the bad field on error."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    return SearchSpace.model_validate(data)


def flag_text(flags: dict[str, Any]) -> str:
    """Knob settings as command-line flags."""
    words = []
    for name, value in flags.items():
        bare = name.lstrip("-")
        if value is True:
            words.append(f"--{bare}")
        elif value is False:
            words.append(f"--no-{bare}")
        elif value is not None:
            words.append(f"--{bare} {value}")
    return " ".join(words)


def trial_launch(space: SearchSpace, flags: dict[str, Any]) -> str:
    """The base launch with the knob flags appended."""
    extra = flag_text(flags)
    return f"{space.launch} {extra}".strip()


def trial_key(launch: str, flags: dict[str, Any], workload_fingerprint: str, bench: dict[str, Any]) -> str:
    """Content address of a trial: same target, flags, workload and options = same trial."""
    blob = json.dumps(
        {"launch": launch, "flags": flags, "workload": workload_fingerprint, "bench": bench}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_trials(path: Path) -> dict[str, Trial]:
    """Finished trials by key (a torn last line from a kill is ignored)."""
    trials: dict[str, Trial] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                trial = Trial.model_validate_json(line)
            except ValueError:
                continue
            trials[trial.key] = trial
    return trials


def _better(a: float, b: float, metric: str) -> bool:
    return a > b if higher_is_better(metric) else a < b


def single_knob_candidates(space: SearchSpace) -> list[dict[str, Any]]:
    """Baseline, then each knob value alone."""
    return [{}] + [{name: value} for name, values in space.knobs.items() for value in values]


def combination_candidates(space: SearchSpace, done: dict[str, Trial]) -> list[dict[str, Any]]:
    """Combinations of the best value of each knob that beat the baseline (top `combine_top`)."""
    by_flags = {json.dumps(t.flags, sort_keys=True): t for t in done.values() if t.status == "ok"}
    base = by_flags.get("{}")
    if base is None or base.value is None:
        return []
    best: list[tuple[float, str, Any]] = []
    for name, values in space.knobs.items():
        scored = [
            (by_flags[json.dumps({name: v}, sort_keys=True)].value, v)
            for v in values
            if json.dumps({name: v}, sort_keys=True) in by_flags
        ]
        scored = [(s, v) for s, v in scored if s is not None and _better(s, base.value, space.metric)]
        if scored:
            top = max(scored, key=lambda sv: sv[0]) if higher_is_better(space.metric) else min(scored)
            best.append((top[0], name, top[1]))
    best.sort(reverse=higher_is_better(space.metric))
    chosen = best[: space.combine_top]
    combos = []
    for size in range(len(chosen), 1, -1):
        for group in itertools.combinations(chosen, size):
            combos.append({name: value for _, name, value in group})
    return combos


def _classify(returncode: int, log: str) -> Status:
    lowered = log.lower()
    if "out of memory" in lowered or "outofmemoryerror" in lowered:
        return "oom"
    return "ok" if returncode == 0 else "failed"


def run_trial(
    space: SearchSpace, flags: dict[str, Any], workload: WorkloadSpec, out_dir: Path, key: str
) -> Trial:
    """One `perfloop bench run` in a fresh process, classified."""
    launch = trial_launch(space, flags)
    result_file = out_dir / f"trial-{key}.json"
    spec = BenchSpec(
        launch=launch,
        workload=workload,
        output=str(result_file),
        progress=False,
        label=f"search-{key}",
        **space.bench,
    )
    spec_file = out_dir / f"trial-{key}.spec.json"
    spec_file.write_text(spec.model_dump_json(indent=2))
    cmd = [sys.executable, "-m", "perfloop.bench.runner", str(spec_file)]
    common = {"key": key, "flags": flags, "launch": launch, "metric": space.metric}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=space.trial_timeout_s)
    except subprocess.TimeoutExpired:
        return Trial(
            **common,
            status="timeout",
            value=None,
            metrics=None,
            error=f"no result after {space.trial_timeout_s:.0f}s",
        )
    status = _classify(proc.returncode, proc.stdout + proc.stderr)
    if status != "ok" or not result_file.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return Trial(
            **common,
            status="failed" if status == "ok" else status,
            value=None,
            metrics=None,
            error="\n".join(tail),
        )
    result = BenchResult.load(result_file)
    if result.completed == 0:
        return Trial(
            **common, status="failed", value=None, metrics=None, error="; ".join(result.perfloop.errors)
        )
    keep = ("request_throughput", "output_throughput", "mean_ttft_ms", "mean_tpot_ms", "p99_e2el_ms")
    return Trial(
        **common,
        status="ok",
        value=result.metric(space.metric),
        metrics={m: result.metric(m) for m in keep},
        result_file=result_file.name,
    )


def run_search(space: SearchSpace, out_dir: Path, on_trial: Any = None) -> list[Trial]:
    """Run (or resume) the search; returns every trial of this space, in order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.jsonl"
    workload = resolve_workload(space.workload, parse_target(space.launch))
    fp = workload.fingerprint()
    done = read_trials(results)
    ordered: list[Trial] = []

    def visit(flags: dict[str, Any]) -> None:
        key = trial_key(space.launch, flags, fp, space.bench)
        if key in {t.key for t in ordered} or len(ordered) >= space.max_trials:
            return
        trial = done.get(key)
        if trial is None:
            trial = run_trial(space, flags, workload, out_dir, key)
            with results.open("a") as fh:
                fh.write(trial.model_dump_json() + "\n")
            done[key] = trial
        ordered.append(trial)
        if on_trial is not None:
            on_trial(trial)

    for flags in single_knob_candidates(space):
        visit(flags)
    mine = {t.key: t for t in ordered}
    for flags in combination_candidates(space, mine):
        visit(flags)
    return ordered
