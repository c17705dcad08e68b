"""Interleaved A/B trials with bootstrap confidence intervals, and the A/A noise band.

Public API (the loop calls it directly):

    from perfloop.bench.ab import run_ab
    ab = run_ab("engine:--model preset:tiny-qwen3", "hf:preset:tiny-qwen3", workload, trials=5)
    ab.metrics["output_throughput"].median_ratio, .ci_low, .ci_high, .verdict

A and B are launch specs (see `perfloop.bench.targets`). Each trial is a pair of fresh
runs (each launch started anew, so no cache or warm state carries over), in an order
drawn from the seed with as many A-first as B-first pairs. Per metric, the ratio is
B / A per pair; the report is the median ratio with a bootstrap 95% interval of that
median, and a verdict for B: "faster" / "slower" when the whole interval is on one side
of 1 (beyond `threshold`), else "within noise". `aa=True` runs A against itself.

Sequential trials (`until`): after the first `trials` pairs, pairs are added two at a time (one AB,
one BA) until the interval of `until.metric` is decisive or `until.max_trials` is spent. For an A/B,
decisive means no decision bar lies inside the interval; for an A/A, that the band (the interval's
half-width around 1) is below `until.margin`, or cannot get below it within the budget (the band
shrinks about as 1/sqrt(pairs), so a band of b after n pairs projects to b*sqrt(n/max) at the
budget): then the goal is unprovable on this host and the trials stop early. `min_trial_s` sizes
a trial by duration: a side's trial repeats its run until that many measured seconds have passed,
and its value is the median of the repeats.

Sides serving different weight precisions are refused unless `allow_precision_mismatch`;
then `precision_note` labels the result.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from perfloop.bench.precision import check_precisions
from perfloop.bench.result import BenchResult
from perfloop.bench.runner import BenchSpec, resolve_workload, run_benchmark
from perfloop.bench.targets import parse_target, target_weights
from perfloop.bench.workloads import WorkloadSpec

Verdict = Literal["faster", "slower", "within noise"]
StopReason = Literal["fixed", "decisive", "budget", "unprovable"]
DEFAULT_METRICS = (
    "output_throughput",
    "request_throughput",
    "mean_ttft_ms",
    "median_ttft_ms",
    "mean_tpot_ms",
    "median_itl_ms",
    "mean_e2el_ms",
)


def higher_is_better(metric: str) -> bool:
    """Throughputs and goodput go up when things improve; latencies (`*_ms`) go down."""
    return not metric.endswith("_ms")


class MetricComparison(BaseModel):
    """One metric across the trials: B/A ratio, its interval, the verdict for B."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    higher_is_better: bool
    a_values: list[float]
    b_values: list[float]
    ratios: list[float]
    median_ratio: float
    ci_low: float
    ci_high: float
    verdict: Verdict


class SequentialRule(BaseModel):
    """When sequential trials stop (see the module docstring); bars are B/A ratios of `metric`."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    max_trials: int = Field(ge=2, description="Trial budget: pairs at most.")
    bars: list[float] = Field(default_factory=list, description="A/B: decision bars the interval must clear.")
    margin: float | None = Field(None, gt=0, description="A/A: the band must get below this margin.")

    def stop(self, cmp: MetricComparison, pairs: int) -> StopReason | None:
        """Why to stop after `pairs` pairs, or None to measure on."""
        if self.margin is not None:
            band = max(1 - cmp.ci_low, cmp.ci_high - 1)
            if band <= self.margin:
                return "decisive"
            if band * (pairs / self.max_trials) ** 0.5 > self.margin:
                return "unprovable"
        elif not any(cmp.ci_low <= bar <= cmp.ci_high for bar in self.bars):
            return "decisive"
        return "budget" if pairs >= self.max_trials else None


Until = SequentialRule | None  # a comparison's stopping rule; None: exactly the trials asked for


class ABResult(BaseModel):
    """An A/B (or A/A) comparison the loop reads."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    a: str
    b: str
    aa: bool
    trials: int
    seed: int
    threshold: float
    confidence: float
    order: list[str]
    stop_reason: StopReason = "fixed"
    workload_fingerprint: str
    metrics: dict[str, MetricComparison]
    result_files: list[str]
    precision_note: str | None = None  # set when a precision mismatch was explicitly allowed


def trial_order(trials: int, seed: int) -> list[str]:
    """Pair orders, balanced between AB and BA and shuffled by the seed, flattened ("A","B","B","A",...)."""
    pairs = [("A", "B") if i % 2 == 0 else ("B", "A") for i in range(trials)]
    random.Random(seed).shuffle(pairs)
    return [side for pair in pairs for side in pair]


def bootstrap_median_ci(
    ratios: Sequence[float], confidence: float = 0.95, n_boot: int = 4000, seed: int = 0
) -> tuple[float, float, float]:
    """Median of the ratios and a percentile-bootstrap interval of that median."""
    arr = np.asarray(ratios, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(arr, size=(n_boot, arr.size), replace=True), axis=1)
    tail = (1.0 - confidence) / 2 * 100
    return (
        float(np.median(arr)),
        float(np.percentile(medians, tail)),
        float(np.percentile(medians, 100 - tail)),
    )


def verdict(ci_low: float, ci_high: float, higher_better: bool, threshold: float = 0.0) -> Verdict:
    """Faster/slower only when the whole interval clears 1 by the threshold."""
    if ci_low > 1.0 + threshold:
        return "faster" if higher_better else "slower"
    if ci_high < 1.0 - threshold:
        return "slower" if higher_better else "faster"
    return "within noise"


def compare_metric(
    metric: str, a: Sequence[float], b: Sequence[float], threshold: float, confidence: float, seed: int
) -> MetricComparison:
    """Pairwise B/A ratios of one metric, summarised."""
    ratios = [bv / av if av else float("inf") for av, bv in zip(a, b, strict=True)]
    median, low, high = bootstrap_median_ci(ratios, confidence, seed=seed)
    better = higher_is_better(metric)
    return MetricComparison(
        metric=metric,
        higher_is_better=better,
        a_values=list(a),
        b_values=list(b),
        ratios=ratios,
        median_ratio=median,
        ci_low=low,
        ci_high=high,
        verdict=verdict(low, high, better, threshold),
    )


def _more_pairs(done: int, seed: int) -> list[str]:
    """The next block of two pairs (one AB, one BA, order drawn from the seed) after `done` pairs."""
    return trial_order(2, seed * 7919 + done)


def run_ab(
    a: str,
    b: str | None,
    workload: WorkloadSpec,
    trials: int = 5,
    seed: int = 0,
    aa: bool = False,
    metrics: Sequence[str] = DEFAULT_METRICS,
    threshold: float = 0.0,
    confidence: float = 0.95,
    out_dir: Path | str | None = None,
    runner: Callable[[BenchSpec], BenchResult] = run_benchmark,
    until: SequentialRule | None = None,
    min_trial_s: float = 0.0,
    allow_precision_mismatch: bool = False,
    **bench_options: Any,
) -> ABResult:
    """Run interleaved trials of A and B (or A twice with `aa`) and compare them."""
    if trials < 2:
        raise ValueError("trials: need at least 2 pairs for an interval")
    if aa:
        b = a
    if b is None:
        raise ValueError("b: give the B launch spec, or aa=True")
    workload = resolve_workload(workload, parse_target(a))
    sides = [("A", target_weights(parse_target(a))), ("B", target_weights(parse_target(b)))]
    precision_note = check_precisions(sides, allow_precision_mismatch)
    order = trial_order(trials, seed)
    values: dict[str, dict[str, list[float]]] = {"A": {m: [] for m in metrics}, "B": {m: [] for m in metrics}}
    files: list[str] = []
    launches = {"A": a, "B": b}
    stop: StopReason = "fixed"
    i = 0
    while i < len(order):
        side = order[i]
        trial = _run_trial(
            launches[side], side, i // 2, workload, out_dir, runner, min_trial_s, bench_options
        )
        files += trial.files
        for m in metrics:
            values[side][m].append(trial.metric(m))
        i += 1
        if until is None or i < len(order):
            continue
        cmp = compare_metric(
            until.metric, values["A"][until.metric], values["B"][until.metric], threshold, confidence, seed
        )
        reason = until.stop(cmp, i // 2)
        if reason is None:
            order += _more_pairs(i // 2, seed)
        else:
            stop = reason
    compared = {
        m: compare_metric(m, values["A"][m], values["B"][m], threshold, confidence, seed) for m in metrics
    }
    return ABResult(
        a=a,
        b=b,
        aa=aa,
        trials=len(order) // 2,
        seed=seed,
        threshold=threshold,
        confidence=confidence,
        order=order,
        stop_reason=stop,
        workload_fingerprint=workload.fingerprint(),
        metrics=compared,
        result_files=files,
        precision_note=precision_note,
    )


class _Trial:
    """One side's trial: the results of its repeats and the files they wrote."""

    def __init__(self) -> None:
        self.results: list[BenchResult] = []
        self.files: list[str] = []

    def metric(self, name: str) -> float:
        found = [r.metric(name) for r in self.results]
        if any(v is None for v in found):
            raise ValueError(f"metrics: {name} is not a result metric (or unset in this run)")
        return float(np.median(np.asarray(found, dtype=float)))


def _run_trial(
    launch: str,
    side: str,
    index: int,
    workload: WorkloadSpec,
    out_dir: Path | str | None,
    runner: Callable[[BenchSpec], BenchResult],
    min_trial_s: float,
    bench_options: dict[str, Any],
) -> _Trial:
    """Run `launch` once, or repeatedly until `min_trial_s` measured seconds have passed."""
    trial = _Trial()
    while not trial.results or sum(r.duration for r in trial.results) < min_trial_s:
        output = None
        if out_dir is not None:
            repeat = f"-r{len(trial.results)}" if trial.results else ""
            output = str(Path(out_dir) / f"trial{index:02d}-{side}{repeat}.json")
            trial.files.append(output)
        spec = BenchSpec(launch=launch, workload=workload, label=f"ab-{side}", output=output, **bench_options)
        result = runner(spec)
        result.check_valid()  # failed requests make a trial meaningless: refuse it, do not compare it
        if result.perfloop.workload_fingerprint != workload.fingerprint():
            raise RuntimeError("workload fingerprint changed between trials; the comparison would be unfair")
        trial.results.append(result)
    return trial
