"""A/B statistics: seeded balanced order, bootstrap interval of the median ratio, verdicts."""

from __future__ import annotations

import pytest

from perfloop.bench.ab import SequentialRule, bootstrap_median_ci, run_ab, trial_order, verdict


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


def _cycle(values: list[float], n: int = 200) -> list[float]:
    return [values[i % len(values)] for i in range(n)]


def _aa(runner, workload, max_trials: int):  # noqa: ANN001, ANN202
    rule = SequentialRule(metric="output_throughput", max_trials=max_trials, margin=0.05)
    metrics = ["output_throughput"]
    return run_ab("http://a", None, workload, trials=4, aa=True, runner=runner, until=rule, metrics=metrics)


def test_quiet_aa_is_decisive_at_the_first_check(fake_runner, tiny_workload) -> None:  # noqa: ANN001
    ab = _aa(fake_runner({"http://a": _cycle([100, 101, 99, 100])}), tiny_workload, 12)
    assert ab.stop_reason == "decisive" and ab.trials == 4


def test_planted_noise_makes_aa_unprovable_before_the_budget(fake_runner, tiny_workload) -> None:  # noqa: ANN001
    # A noise source planted in the runner: the same config measures 2x apart between trials.
    ab = _aa(fake_runner({"http://a": _cycle([300, 660, 270, 520, 410])}), tiny_workload, 16)
    m = ab.metrics["output_throughput"]
    assert ab.stop_reason == "unprovable" and ab.trials < 16
    assert max(1 - m.ci_low, m.ci_high - 1) > 0.05


def test_ab_adds_balanced_pairs_until_the_bar_is_cleared_or_the_budget_spent(
    fake_runner,
    tiny_workload,  # noqa: ANN001
) -> None:
    clear = fake_runner({"http://a": _cycle([100, 101, 99]), "http://b": _cycle([150, 151, 149])})
    rule = SequentialRule(metric="output_throughput", max_trials=10, bars=[1.05])
    ab = run_ab(
        "http://a",
        "http://b",
        tiny_workload,
        trials=2,
        runner=clear,
        until=rule,
        metrics=["output_throughput"],
    )
    assert ab.stop_reason == "decisive" and ab.trials == 2
    # B straddles the bar: more pairs, two at a time (one AB, one BA), until the budget.
    close = fake_runner({"http://a": _cycle([100, 100]), "http://b": _cycle([95, 115, 104, 106])})
    ab = run_ab(
        "http://a",
        "http://b",
        tiny_workload,
        trials=2,
        runner=close,
        until=rule,
        metrics=["output_throughput"],
    )
    pairs = [tuple(ab.order[i : i + 2]) for i in range(0, len(ab.order), 2)]
    assert ab.stop_reason == "budget" and ab.trials == 10
    assert pairs[2:].count(("A", "B")) == pairs[2:].count(("B", "A"))


def test_trials_are_sized_by_duration(fake_runner, tiny_workload, tmp_path) -> None:  # noqa: ANN001
    # Throughput 100 lasts 1 s per run: a 2.5 s trial takes three runs per side.
    runner = fake_runner({"http://a": _cycle([100]), "http://b": _cycle([100])})
    ab = run_ab(
        "http://a",
        "http://b",
        tiny_workload,
        trials=2,
        runner=runner,
        min_trial_s=2.5,
        metrics=["output_throughput"],
        out_dir=tmp_path,
    )
    assert len(ab.result_files) == 12
    assert sorted(f.split("/")[-1] for f in ab.result_files)[:3] == [
        "trial00-A-r1.json",
        "trial00-A-r2.json",
        "trial00-A.json",
    ]
