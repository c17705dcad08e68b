"""The `accuracy` gate on planted records: drops, drift, consistency breaches, and candidates that
try to pass on fewer or different items; the spec's accuracy block and its load-time checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import make_spec

from perfloop.eval.items import builtin_items, spread
from perfloop.eval.tasks import task_record
from perfloop.ledger.eval_records import AccuracyRun, ConsistencyCheck, ConsistencyRecord, ItemResult
from perfloop.loop.accuracy import baseline_broken, freeze_bars, judge
from perfloop.loop.gates import GATES, ReviewInput
from perfloop.loop.spec import AccuracySpec, SpecError, load_spec

CHECKS = ("decode_vs_prefill", "alone_vs_batch", "cold_vs_prefix_cache")


def item(i: int, correct: bool, scores: tuple[float, float] = (-1.0, -2.0)) -> ItemResult:
    """Item q{i}: answer 0; scored right (choice 0 wins) or wrong (choice 1 wins)."""
    right, wrong = scores
    pair = [right, wrong] if correct else [wrong, right]
    return ItemResult(
        id=f"q{i}", prompt_hash=f"h{i}", scores=pair, pred=0 if correct else 1, answer=0, correct=correct
    )


def run(items: list[ItemResult], diffs: dict[str, float] | None = None, tokens: int = 32) -> AccuracyRun:
    """An accuracy phase's record with these items and per-check max |delta logprob|."""
    diffs = diffs or {}
    checks = [
        ConsistencyCheck(
            check=c,
            tokens=tokens,
            max_abs_diff=diffs.get(c, 2.9e-5),
            mean_abs_diff=1e-6,
            p99_abs_diff=1e-5,
            threshold=1e-3,
            passed=True,
        )  # fmt: skip
        for c in CHECKS
    ]
    record = ConsistencyRecord(target="t", prompts=2, tokens_per_prompt=16, checks=checks, passed=True)
    return AccuracyRun(
        side="s", launch="engine:", task=task_record(items, "t"), consistency=record,
        launch_s=1.0, task_s=2.0, consistency_s=3.0,
    )  # fmt: skip


BASE = [item(i, i < 18) for i in range(20)]  # 0.90


def test_an_identical_candidate_passes_with_every_figure_in_the_evidence() -> None:
    verdict = judge(freeze_bars(AccuracySpec(), run(BASE)), run(BASE))
    assert verdict.passed, verdict.evidence
    assert "0 right->wrong" in verdict.evidence and "consistency/cold_vs_prefix_cache" in verdict.evidence


def test_a_drop_beyond_the_tolerance_is_rejected_with_its_flips() -> None:
    cand = [item(i, i < 15) for i in range(20)]  # 0.75: three right->wrong
    verdict = judge(freeze_bars(AccuracySpec(dtype="bfloat16"), run(BASE)), run(cand))
    assert verdict.failed[0] == "task_accuracy"
    assert verdict.paired is not None and verdict.paired.correct_to_incorrect == ["q15", "q16", "q17"]
    assert "drop +0.150" in verdict.evidence


def test_a_drop_within_the_tolerance_passes() -> None:
    # bf16: a 0.1-nat move that flips one close call is within the drift bound (0.5).
    close = [item(i, i < 18, (-1.0, -1.05)) for i in range(20)]
    cand = [item(i, i < 17, (-1.0, -1.05)) for i in range(20)]  # 0.85: drop 0.05
    verdict = judge(freeze_bars(AccuracySpec(dtype="bfloat16"), run(close)), run(cand))
    assert verdict.passed, verdict.evidence


def test_an_fp32_drift_too_small_to_flip_an_answer_is_rejected() -> None:
    cand = [item(i, i < 18, (-1.0 - 5e-3, -2.0)) for i in range(20)]
    verdict = judge(freeze_bars(AccuracySpec(), run(BASE)), run(cand))
    assert verdict.failed == ["task_drift"] and "drift 5.00e-03" in verdict.evidence


def test_a_consistency_breach_is_rejected_by_the_check_that_broke() -> None:
    verdict = judge(freeze_bars(AccuracySpec(), run(BASE)), run(BASE, {"decode_vs_prefill": 0.4}))
    assert verdict.failed == ["consistency/decode_vs_prefill"]
    assert "max |d logprob| 4.00e-01 (threshold 1.0e-03" in verdict.evidence


def test_thresholds_are_frozen_from_the_baseline_above_the_dtype_minimum() -> None:
    bf16 = freeze_bars(AccuracySpec(dtype="bfloat16"), run(BASE, {"decode_vs_prefill": 0.158}))
    assert bf16.thresholds["decode_vs_prefill"] == pytest.approx(1.58)
    assert bf16.thresholds["alone_vs_batch"] == 0.15  # the dtype's minimum
    assert freeze_bars(AccuracySpec(), run(BASE)).thresholds["decode_vs_prefill"] == 1e-3
    # A noisy bf16 baseline's own figure passes; ten times it does not.
    assert judge(bf16, run(BASE, {"decode_vs_prefill": 0.16})).passed
    assert not judge(bf16, run(BASE, {"decode_vs_prefill": 1.6})).passed


def test_no_tolerance_given_uses_the_baseline_intervals_half_width() -> None:
    frozen = freeze_bars(AccuracySpec(tolerance=None), run(BASE))
    task = frozen.baseline.task
    assert frozen.tolerance == pytest.approx((task.high - task.low) / 2)


@pytest.mark.parametrize(
    "cand",
    [
        pytest.param(BASE[:17], id="truncated: the three wrong items dropped"),
        pytest.param([*BASE[:19], item(99, True)], id="an item id changed"),
        pytest.param(
            [*BASE[:19], BASE[19].model_copy(update={"prompt_hash": "other"})], id="a prompt changed"
        ),
    ],
)
def test_a_candidate_on_fewer_or_other_items_never_passes(cand: list[ItemResult]) -> None:
    verdict = judge(freeze_bars(AccuracySpec(), run(BASE)), run(cand))
    assert "task_items" in verdict.failed and verdict.paired is None, verdict.evidence


def test_fewer_logprobs_than_the_baseline_scored_is_a_breach() -> None:
    verdict = judge(freeze_bars(AccuracySpec(), run(BASE)), run(BASE, tokens=8))
    assert set(verdict.failed) == {f"consistency/{c}" for c in CHECKS}


def test_a_baseline_under_the_floor_is_broken() -> None:
    low = [item(i, i < 8) for i in range(20)]
    assert baseline_broken(freeze_bars(AccuracySpec(), run(low))) == (
        "baseline broken: accuracy 0.400 < floor 0.50 on 20 items"
    )
    assert baseline_broken(freeze_bars(AccuracySpec(), run(BASE))) is None


def test_the_registry_gate_judges_the_round_records(tmp_path: Path, target_repo: Path) -> None:
    without = make_spec(target_repo, tmp_path)
    spec = make_spec(target_repo, tmp_path, accuracy={"max_items": 20})
    frozen = freeze_bars(spec.accuracy, run(BASE))

    def gate(spec, cand):  # noqa: ANN001, ANN202 - only what the accuracy gate reads is filled in
        inp = ReviewInput(spec, None, None, None, None, None, None, None, True, tmp_path,  # type: ignore[arg-type]
                          accuracy_freeze=frozen, accuracy=cand)  # fmt: skip
        return GATES["accuracy"].check(inp)

    assert not GATES["accuracy"].static
    assert gate(without, None) == (True, "not checked: the spec has no accuracy block")
    assert gate(spec, None) == (False, "not measured (correctness failed first)")
    passed, evidence = gate(spec, run(BASE[:10]))
    assert not passed and evidence.startswith("FAILED task_items")


def test_the_accuracy_block_is_checked_at_spec_load(tmp_path: Path, target_repo: Path) -> None:
    with pytest.raises(SpecError, match=r"accuracy.dtype: 'fp33' is not one of float32, bfloat16, float16"):
        make_spec(target_repo, tmp_path, accuracy={"dtype": "fp33"})
    with pytest.raises(SpecError, match=r"accuracy.flor: Extra inputs are not permitted"):
        make_spec(target_repo, tmp_path, accuracy={"flor": 0.4})
    with pytest.raises(SpecError, match=r"accuracy.items: .*no-such.jsonl"):
        make_spec(target_repo, tmp_path, accuracy={"items": str(tmp_path / "no-such.jsonl")})
    items = tmp_path / "specs" / "qa.jsonl"
    items.parent.mkdir()
    items.write_text(builtin_items()[0].model_dump_json() + "\n")
    data = yaml.safe_load(make_spec(target_repo, tmp_path).model_dump_json())
    data["accuracy"] = {"items": "qa.jsonl"}  # relative: to the spec file's folder
    (items.parent / "goal.yaml").write_text(yaml.safe_dump(data))
    assert load_spec(items.parent / "goal.yaml").accuracy.items == str(items)


def test_a_subset_spreads_over_every_family() -> None:
    picked = spread(builtin_items(), 8)
    assert len(picked) == 8
    assert {i.id.split("-")[0] for i in picked} == {"capital", "day", "month", "opposite", "count"}


def test_the_example_spec_loads_with_its_accuracy_block() -> None:
    spec = load_spec(Path(__file__).resolve().parents[2] / "examples" / "accuracy-gate.yaml")
    assert spec.accuracy is not None and spec.accuracy.max_items == 24 and spec.accuracy.vocab == 49152
