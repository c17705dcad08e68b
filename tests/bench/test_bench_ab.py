"""A/B statistics: seeded balanced order, bootstrap interval of the median ratio, verdicts."""

from __future__ import annotations

import pytest

from perfloop.bench.ab import bootstrap_median_ci, run_ab, trial_order, verdict


def test_order_is_seeded_interleaved_and_balanced() -> None:
    order = trial_order(6, seed=3)
    assert order == trial_order(6, seed=3)
    pairs = [tuple(order[i : i + 2]) for i in range(0, 12, 2)]
    assert pairs.count(("A", "B")) == pairs.count(("B", "A")) == 3
    assert any(trial_order(6, seed=s) != order for s in range(1, 5))


def test_bootstrap_interval_brackets_the_median() -> None:
    median, low, high = bootstrap_median_ci([0.98, 1.01, 1.0, 1.03, 0.99], seed=1)
    assert median == pytest.approx(1.0)
    assert low <= median <= high and low >= 0.98 and high <= 1.03


def test_verdict_respects_direction_and_threshold() -> None:
    assert verdict(1.1, 1.2, higher_better=True) == "faster"
    assert verdict(1.1, 1.2, higher_better=False) == "slower"  # latency went up
    assert verdict(0.8, 0.9, higher_better=False) == "faster"
    assert verdict(0.95, 1.05, higher_better=True) == "within noise"
    assert verdict(1.01, 1.02, higher_better=True, threshold=0.05) == "within noise"


def test_run_ab_reports_faster_b_with_interval(fake_runner, tiny_workload) -> None:  # noqa: ANN001
    runner = fake_runner({"http://a": [100, 102, 98, 101], "http://b": [150, 149, 152, 151]})
    ab = run_ab("http://a", "http://b", tiny_workload, trials=4, runner=runner, metrics=["output_throughput"])
    m = ab.metrics["output_throughput"]
    assert m.verdict == "faster" and m.ci_low > 1.0 and m.median_ratio == pytest.approx(1.5, rel=0.05)
    assert len(ab.order) == 8 and ab.workload_fingerprint == tiny_workload.fingerprint()


def test_aa_uses_a_twice(fake_runner, tiny_workload) -> None:  # noqa: ANN001
    runner = fake_runner({"http://a": [100, 101, 99, 100, 102, 98, 100, 100]})
    ab = run_ab(
        "http://a", None, tiny_workload, trials=4, aa=True, runner=runner, metrics=["output_throughput"]
    )
    m = ab.metrics["output_throughput"]
    assert ab.b == ab.a and m.verdict == "within noise" and m.ci_low <= 1.0 <= m.ci_high


def test_bad_arguments_name_the_field(tiny_workload) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="trials"):
        run_ab("http://a", "http://b", tiny_workload, trials=1)
    with pytest.raises(ValueError, match="b:"):
        run_ab("http://a", None, tiny_workload)
