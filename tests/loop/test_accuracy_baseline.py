"""A broken baseline is not a bar: `perfloop goal run` on corrupted SmolLM2 weights ends BLOCKED."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import commit_all, run_cli
from safetensors.torch import load_file, save_file

from perfloop.engine.models.presets import resolve_model
from perfloop.ledger.store import EVENTS


@pytest.fixture(scope="module")
def corrupted_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M with every decoder matrix noised (seeded, twice each matrix's own spread)."""
    src = resolve_model("preset:smollm2-135m")
    dst = tmp_path_factory.mktemp("models") / "smollm2-corrupted"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors", "perfloop_preset.json"))
    weights = load_file(src / "model.safetensors")
    gen = torch.Generator().manual_seed(0)
    for name, w in weights.items():
        if ".layers." in name and w.dim() == 2:
            weights[name] = w + torch.randn(w.shape, generator=gen) * w.std() * 2
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


@pytest.mark.slow
def test_a_run_on_a_corrupted_baseline_ends_blocked_with_the_reason(
    tmp_path: Path, corrupted_model: Path
) -> None:
    repo = tmp_path / "target"
    repo.mkdir()
    (repo / "engine.yaml").write_text(yaml.safe_dump({"model": str(corrupted_model), "torch_threads": 1}))
    commit_all(repo, "target")
    spec = {
        "target": {
            "repo": str(repo),
            "engine_config_file": "engine.yaml",
            "allowed_paths": ["engine.yaml"],
            "correctness": f"{sys.executable} -c pass",
        },
        "workload": {"kind": "random", "num_prompts": 2, "input_len": 8, "output_len": 2},
        "objective": {"kind": "reach_value", "value": 1e12},
        "artifact_root": str(tmp_path / "artifacts"),
        "accuracy": {"max_items": 12, "prompts": 2, "prompt_len": 20, "tokens": 4, "vocab": 49152},
    }
    (tmp_path / "goal.yaml").write_text(yaml.safe_dump(spec))
    result = run_cli("goal", "run", "--spec", str(tmp_path / "goal.yaml"), "--run-id", "broken")
    out = result.stdout + result.stderr
    assert "BLOCKED" in out and "baseline broken: accuracy" in out, out[-3000:]
    root = tmp_path / "artifacts" / "broken"
    last = json.loads((root / EVENTS).read_text().splitlines()[-1])
    assert last["state"] == "BLOCKED" and last["data"]["from"] == "FREEZE"
    reason = last["data"]["loop"]["reason"]
    assert reason.startswith("baseline broken: accuracy") and "< floor 0.50 on 12 items" in reason
    frozen = json.loads((root / "freeze" / "accuracy.json").read_text())
    assert frozen["baseline"]["task"]["accuracy"] < 0.5
    assert not (root / "freeze" / "aa.json").exists()  # nothing measured against a broken bar
    assert "below the floor" in (root / "report.md").read_text()
