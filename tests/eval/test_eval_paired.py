"""The shipped items, the paired comparison (flips, drift, unpaired refusals) and the baseline floor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfloop.cli import app
from perfloop.eval.items import builtin_items, load_items
from perfloop.eval.paired import UnpairedItems, baseline_broken, compare
from perfloop.eval.tasks import task_record, wilson
from perfloop.ledger.eval_records import ItemResult, TaskEvalRecord


def record(correct: list[bool], scores: list[list[float]] | None = None) -> TaskEvalRecord:
    results = [
        ItemResult(
            id=f"q{i}", prompt_hash=f"h{i}", scores=(scores or [[0.0, -1.0]] * len(correct))[i],
            pred=0 if ok else 1, answer=0, correct=ok,
        )
        for i, ok in enumerate(correct)
    ]  # fmt: skip
    return task_record(results, "test")


def test_builtin_items_are_deterministic_well_formed_and_unique() -> None:
    a, b = builtin_items(), builtin_items()
    assert [i.model_dump() for i in a] == [i.model_dump() for i in b]
    assert len({i.id for i in a}) == len(a) == 84
    for item in a:
        assert len(set(item.choices)) == len(item.choices) == 4
        assert item.choices[item.answer].strip() and item.context


def test_user_items_load_and_bad_answers_are_named(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        json.dumps({"id": "x", "context": "1 + 1 =", "choices": [" 2", " 3"], "answer": 0}) + "\n"
    )
    assert load_items(path)[0].id == "x"
    path.write_text(json.dumps({"id": "y", "context": "c", "choices": [" a", " b"], "answer": 5}) + "\n")
    with pytest.raises(ValueError, match="item y: answer 5"):
        load_items(path)


def test_flips_are_counted_both_ways_and_the_tolerance_decides() -> None:
    base = record([True, True, False, True])
    cand = record([True, False, True, False])
    result = compare(base, cand, tolerance=0.05)
    assert result.correct_to_incorrect == ["q1", "q3"] and result.incorrect_to_correct == ["q2"]
    assert result.drop == pytest.approx(0.25) and not result.passed
    assert compare(base, cand, tolerance=0.3).passed


def test_loglikelihood_drift_fails_even_when_accuracy_holds() -> None:
    base = record([True, True], [[-0.5, -2.0], [-0.1, -3.0]])
    cand = record([True, True], [[-0.5, -2.0], [-0.102, -3.0]])
    assert compare(base, cand, tolerance=0.0, drift_tolerance=1e-3).passed is False
    assert compare(base, cand, tolerance=0.0, drift_tolerance=1e-2).passed


def test_items_must_pair_by_id_and_prompt_hash() -> None:
    base, cand = record([True, True]), record([True])
    with pytest.raises(UnpairedItems, match="missing"):
        compare(base, cand, 0.05)
    changed = record([True, True])
    changed.results[1].prompt_hash = "other"
    with pytest.raises(UnpairedItems, match="changed prompts"):
        compare(base, changed, 0.05)


def test_baseline_floor_and_wilson_interval() -> None:
    assert baseline_broken(record([True, False, False])) is not None
    assert baseline_broken(record([True, True, False])) is None
    low, high = wilson(78, 84)
    assert 0.84 < low < 78 / 84 < high < 0.97


def test_cli_compare_exit_codes(tmp_path: Path) -> None:
    base, cand = tmp_path / "b.json", tmp_path / "c.json"
    base.write_text(record([True, True, True, False]).model_dump_json())
    cand.write_text(record([True, True, False, False]).model_dump_json())
    runner = CliRunner()
    fail = runner.invoke(app, ["eval", "compare", str(base), str(cand), "--tolerance", "0.1"])
    assert fail.exit_code == 1 and "1 right->wrong" in fail.output
    ok = runner.invoke(app, ["eval", "compare", str(base), str(cand), "--tolerance", "0.25"])
    assert ok.exit_code == 0
    broken = runner.invoke(app, ["eval", "compare", str(cand), str(cand)])
    assert broken.exit_code == 0  # 0.5 is the floor itself, not below it
    bad = runner.invoke(app, ["eval", "compare", str(base), str(cand), "--dtype", "fp8"])
    assert bad.exit_code == 2 and "--dtype: 'fp8'" in bad.output
