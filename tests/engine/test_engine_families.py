"""Adding a model family is one registry entry: a test-only family is materialised, loaded and run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from perfloop.engine.llm import LLM
from perfloop.engine.models.config import ModelConfig
from perfloop.engine.models.families import FAMILIES, ModelFamily, register_family
from perfloop.engine.models.presets import PRESETS, write_random_model
from perfloop.engine.sampling_params import SamplingParams
from perfloop.profilers.roofline import step_costs

# A combination no shipped family has: QKV bias (Qwen2) and per-head q/k norm (Qwen3) together.
TEST_FAMILY = ModelFamily("perfloop-test", "PerfloopTestForCausalLM", qkv_bias=True, qk_norm=True)


@pytest.fixture
def test_family() -> Iterator[ModelFamily]:
    yield register_family(TEST_FAMILY)  # the one entry; everything below reads it from the registry
    del FAMILIES[TEST_FAMILY.architecture]


def _config() -> dict:
    base = PRESETS["tiny-qwen3"]
    return {**base, "architectures": [TEST_FAMILY.architecture], "model_type": TEST_FAMILY.name}


def test_a_registered_family_is_materialised_loaded_and_run_on_cpu(
    test_family: ModelFamily, tmp_path: Path
) -> None:
    model_dir = write_random_model(_config(), tmp_path / "m", std=0.1)
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
        bias = f.get_tensor("model.layers.0.self_attn.k_proj.bias")
    assert {"model.layers.0.self_attn.q_proj.bias", "model.layers.2.self_attn.q_norm.weight"} <= names

    llm = LLM(str(model_dir), device="cpu")
    outputs = llm.generate(
        [[1, 2, 3], [4, 5, 6, 7, 8]], SamplingParams(max_tokens=5, temperature=0, ignore_eos=True)
    )
    assert [len(o.output_token_ids) for o in outputs] == [5, 5]
    assert all(0 <= t < 512 for o in outputs for t in o.output_token_ids)
    attn = llm.engine.runner.model.layers[0].self_attn
    assert attn.q_norm is not None  # the family's switches reached the decoder ...
    q, kv = attn.q_size, attn.kv_size
    assert torch.equal(attn.qkv_proj.bias[q : q + kv], bias)  # ... and the loader filled the packed bias


def test_the_roofline_charges_the_family_switches(test_family: ModelFamily) -> None:
    ours = {c.operator: c for c in step_costs(ModelConfig.from_hf(_config()), 2, 64, "decode")}
    qwen3 = {c.operator: c for c in step_costs(ModelConfig.from_hf(PRESETS["tiny-qwen3"]), 2, 64, "decode")}
    assert ours["qkv_proj"].bytes > qwen3["qkv_proj"].bytes  # the bias is read
    assert ours["norms+residual+rope+act"].flops == qwen3["norms+residual+rope+act"].flops  # both q/k-norm


def test_an_unregistered_architecture_names_itself_and_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'PerfloopTestForCausalLM'.*Qwen3ForCausalLM"):
        ModelConfig.from_hf(_config())
