"""The search's combination stage, on scripted trial values (timing-free; the e2e test covers resume)."""

from __future__ import annotations

import json

from perfloop.bench.search import SearchSpace, Trial, combination_candidates
from perfloop.bench.workloads import WorkloadSpec

KNOBS = {"--itl-ms": [1, 3], "--ttft-ms": [5, 10], "--max-num-seqs": [4]}


def _space(metric: str, combine_top: int = 2) -> SearchSpace:
    workload = WorkloadSpec(kind="random", num_prompts=4, input_len=8, output_len=8)
    return SearchSpace(launch="x", workload=workload, metric=metric, knobs=KNOBS, combine_top=combine_top)


def _done(values: dict[str, float], metric: str) -> dict[str, Trial]:
    """Trials keyed by their flags' JSON; `values` maps "" (baseline) or "--flag=value" to the metric."""
    trials = {}
    for spec, value in values.items():
        name, _, raw = spec.partition("=")
        flags = {name: int(raw)} if name else {}
        key = json.dumps(flags, sort_keys=True)
        trials[key] = Trial(
            key=key, flags=flags, launch="x", status="ok", metric=metric, value=value, metrics={}
        )
    return trials


def test_the_best_value_of_each_winning_knob_is_combined() -> None:
    metric = "mean_e2el_ms"  # lower is better
    done = _done(
        {"": 50, "--itl-ms=1": 40, "--itl-ms=3": 45, "--ttft-ms=5": 60, "--max-num-seqs=4": 30}, metric
    )
    assert combination_candidates(_space(metric), done) == [{"--max-num-seqs": 4, "--itl-ms": 1}]


def test_no_combination_below_two_winners_or_with_combine_top_0() -> None:
    metric = "output_throughput"  # higher is better
    one_winner = _done({"": 100, "--itl-ms=1": 120, "--ttft-ms=5": 90}, metric)
    assert combination_candidates(_space(metric), one_winner) == []
    two_winners = _done({"": 100, "--itl-ms=1": 120, "--ttft-ms=5": 110}, metric)
    assert combination_candidates(_space(metric), two_winners) == [{"--itl-ms": 1, "--ttft-ms": 5}]
    assert combination_candidates(_space(metric, combine_top=0), two_winners) == []
