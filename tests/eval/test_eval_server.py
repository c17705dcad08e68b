"""The eval through a real `perfloop serve`: item-by-item parity with HF transformers, and consistency."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfloop.bench.launcher import Launcher
from perfloop.cli import app
from perfloop.engine.models.presets import resolve_model
from perfloop.eval.client import Completions
from perfloop.eval.consistency import check_consistency
from perfloop.eval.items import Item
from perfloop.eval.tasks import hf_scorer, score_items, server_scorer
from perfloop.ledger.eval_records import TaskEvalRecord

MODEL = "preset:tiny-llama"
ITEMS = [
    Item(id=f"q{i}", context=f"item {i}: the answer is", choices=[" yes", " no", " maybe"], answer=i % 3)
    for i in range(6)
]


@pytest.fixture(scope="module")
def server():
    cmd = f"{sys.executable} -m perfloop.cli serve --model {MODEL} --port {{port}} --torch-threads 1"
    with Launcher(cmd, health_timeout=300) as launched:
        yield launched.url


@pytest.mark.slow
def test_server_and_hf_score_every_item_alike_in_fp32(server: str) -> None:
    served = score_items(ITEMS, server_scorer(Completions(server, MODEL)))
    local = score_items(ITEMS, hf_scorer(resolve_model(MODEL)))
    for a, b in zip(served, local, strict=True):
        assert a.pred == b.pred and a.correct == b.correct, (a, b)
        assert a.scores == pytest.approx(b.scores, abs=1e-4)


@pytest.mark.slow
def test_consistency_holds_in_fp32_and_the_cli_writes_records(server: str, tmp_path: Path) -> None:
    record = check_consistency(
        Completions(server, MODEL), server, "float32", n=3, length=24, tokens=8, vocab=500
    )
    assert record.passed, record.checks
    assert {c.check for c in record.checks} == {"decode_vs_prefill", "alone_vs_batch", "cold_vs_prefix_cache"}
    assert all(c.tokens == 24 for c in record.checks)
    items = tmp_path / "items.jsonl"
    items.write_text("".join(i.model_dump_json() + "\n" for i in ITEMS))
    out = tmp_path / "eval.json"
    args = ["eval", "tasks", "--url", server, "--model", MODEL, "--items", str(items), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert TaskEvalRecord.model_validate(json.loads(out.read_text())).items == len(ITEMS)


@pytest.mark.slow
def test_an_unknown_model_name_is_a_one_line_error(server: str) -> None:
    result = CliRunner().invoke(app, ["eval", "tasks", "--url", server, "--model", "no-such-model"])
    assert result.exit_code == 2
    assert "HTTP 404" in result.output or "HTTP 400" in result.output
