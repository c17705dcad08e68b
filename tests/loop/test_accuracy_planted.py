"""Planted numerical bugs in a candidate engine tree, caught by the `accuracy` gate by name.

The target repo holds a copy of the bundled engine (a code target: each side serves its own tree's
`perfloop/engine`); each candidate is a commit with a tiny patch to that source. A real loop run
(benchmarks faked, everything accuracy-related real: SmolLM2-135M fp32 on CPU behind `perfloop serve`)
freezes the baseline's figures and judges every candidate with the registry's gates.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import FakeBackend, ScriptedPatcher, commit_all, make_spec

import perfloop
from perfloop.loop.machine import Run

ENGINE = "perfloop/engine"


def patch(rel: str, old: str, new: str) -> Callable[[Path], None]:
    """An edit replacing the one occurrence of `old` in `ENGINE/rel`."""

    def edit(tree: Path) -> None:
        path = tree / ENGINE / rel
        text = path.read_text()
        assert text.count(old) == 1, f"{rel}: the planted patch no longer applies"
        path.write_text(text.replace(old, new))

    return edit


def named(name: str, edit: Callable[[Path], None]) -> Callable[[Path], None]:
    edit.__name__ = name
    return edit


ROPE = named(
    "rope_perturbed_1e-3",
    patch(
        "models/layers.py",
        "inv = rope_inv_freq(head_dim, theta, scaling)\n",
        "inv = rope_inv_freq(head_dim, theta, scaling) * (1 + 1e-3)\n",
    ),
)
MLP_DECODE = named(
    "last_mlp_skipped_on_decode",
    patch(
        "models/decoder.py",
        "                    x, residual = layer(x, residual, positions, kv, meta, backend)\n",
        "                    x, residual = layer(x, residual, positions, kv, meta, backend)\n"
        "                    if meta.is_decode and i == len(self.layers) - 1:\n"
        "                        x = torch.zeros_like(x)\n",
    ),
)
STALE_KV = named(
    "stale_kv_block_after_prefix_hit",
    patch(
        "block_manager.py",
        "        for block_id in hits:\n            self._take(block_id)\n",
        "        if len(hits) > 1:\n            hits[-1] = hits[-2]\n"
        "        for block_id in hits:\n            self._take(block_id)\n",
    ),
)
REFACTOR = named(
    "mlp_split_by_slicing",
    patch(
        "models/layers.py",
        "        gate, up = gate_up.chunk(2, dim=-1)\n",
        "        half = gate_up.shape[-1] // 2\n"
        "        gate, up = gate_up[..., :half], gate_up[..., half:]\n",
    ),
)


@pytest.fixture
def engine_repo(tmp_path: Path) -> Path:
    """A target repo holding a copy of the bundled engine and the config that serves SmolLM2-135M."""
    repo = tmp_path / "engine-target"
    source = Path(perfloop.__file__).resolve().parent / "engine"
    shutil.copytree(source, repo / ENGINE, ignore=shutil.ignore_patterns("__pycache__"))
    config = {"model": "preset:smollm2-135m", "dtype": "float32", "torch_threads": 1}
    (repo / "engine.yaml").write_text(yaml.safe_dump(config))
    commit_all(repo, "engine")
    return repo


@pytest.mark.slow
def test_planted_numerical_bugs_are_rejected_by_name_and_a_refactor_passes(
    tmp_path: Path, engine_repo: Path
) -> None:
    edits = [ROPE, MLP_DECODE, STALE_KV, REFACTOR]
    spec = make_spec(
        engine_repo,
        tmp_path,
        target={
            "repo": str(engine_repo),
            "engine_config_file": "engine.yaml",
            "allowed_paths": [f"{ENGINE}/**"],
            "correctness": f"{sys.executable} -c pass",
        },
        peers=[],
        objective={"kind": "reach_value", "value": 1e12},
        budgets={"max_rounds": len(edits)},
        stop={"stall_after": len(edits) + 1, "research_after": len(edits) + 1},
        accuracy={"max_items": 8, "prompts": 2, "prompt_len": 40, "tokens": 6, "vocab": 49152},
    )
    run = Run.create(spec, FakeBackend(), ScriptedPatcher(edits))
    run.drive()
    frozen = json.loads((run.root / "freeze/accuracy.json").read_text())
    assert frozen["baseline"]["task"]["accuracy"] >= 0.5
    expected = {
        ROPE: "task_drift",
        MLP_DECODE: "consistency/decode_vs_prefill",
        STALE_KV: "consistency/cold_vs_prefix_cache",
        REFACTOR: None,
    }
    for number, (edit, check) in enumerate(expected.items(), start=1):
        review = json.loads((run.root / f"rounds/{number:03d}/review.json").read_text())
        gate = next(g for g in review["gates"] if g["gate"] == "accuracy")
        if check is None:
            assert gate["passed"], (edit.__name__, gate["evidence"])
        else:
            assert not gate["passed"] and "accuracy" in review["rejected_by"], (edit.__name__, review)
            named_checks = gate["evidence"].split(";")[0]
            assert check in named_checks, (edit.__name__, gate["evidence"])
