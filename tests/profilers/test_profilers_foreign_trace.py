"""A trace of another engine (HF transformers `generate` on CPU) gives sensible tables without
perfloop annotations: stages from the attention anchor, Python sites inside transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from perfloop.engine.models.presets import resolve_model
from perfloop.profilers.tables import analyze, load_activities

pytestmark = pytest.mark.slow  # loads HF transformers and runs generate (~7 s)


@pytest.fixture(scope="module")
def hf_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        resolve_model("preset:tiny-llama"), attn_implementation="sdpa"
    )
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(0))
    path = tmp_path_factory.mktemp("hf") / "hf_generate.json.gz"
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_stack=True) as prof:
        model.generate(ids, max_new_tokens=4, do_sample=False, min_new_tokens=4)
    prof.export_chrome_trace(str(path))
    return path


def test_stages_come_from_attention_anchors(hf_trace: Path) -> None:
    trace, acts = load_activities(hf_trace)
    assert not [a for a in trace.annotations if a.name.startswith("perfloop.")]
    stages = {a.stage for a in acts}
    assert {"prefill", "decode"} <= stages
    sdpa = [a for a in acts if a.name == "aten::scaled_dot_product_attention"]
    assert [a.stage for a in sdpa].count("prefill") == 2  # 2 layers, one prefill pass
    assert all(a.stage == "decode" for a in sdpa[2:])


def test_tables_point_into_transformers(hf_trace: Path, tmp_path: Path) -> None:
    # --all: on a loaded machine the tiny model's GEMMs can fall under the 1% fold
    result = analyze(hf_trace, tmp_path, formats=("json",), show_all=True)
    decode = result["decode"]
    assert abs(sum(r["share_pct"] for r in decode["kernel_table"]) - 100) < 0.1
    sites = " ".join(s["site"] for r in decode["kernel_table"] for s in r["python_sites"])
    assert "transformers/" in sites
    gemm = next(r for r in decode["kernel_table"] if r["category"] == "gemm")
    assert gemm["launches"] > 0
