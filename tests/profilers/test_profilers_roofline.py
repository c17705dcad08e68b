"""Roofline and capacity numbers against hand calculations."""

from __future__ import annotations

import math

import pytest

from perfloop.profilers.capacity import capacity, kv_bytes_per_token
from perfloop.profilers.gpus import GPUS, gpu_spec
from perfloop.profilers.roofline import floor_us, load_model_config, step_costs


def test_llama_8b_decode_batch1_is_weight_bandwidth_bound() -> None:
    cfg = load_model_config("preset:llama-3.1-8b")
    h, i, layers, v = 4096, 14336, 32, 128256
    per_layer = h * (32 + 2 * 8) * 128 + 32 * 128 * h + h * 2 * i + i * h  # qkv, o, gate_up, down
    weight_bytes = (per_layer * layers + h * v) * 2  # bf16, lm_head untied; embedding only gathered
    assert weight_bytes == pytest.approx(15.01e9, rel=1e-3)
    hand_us = weight_bytes / 4.8e12 * 1e6  # ~3.13 ms on an H200
    costs = step_costs(cfg, batch=1, context=1, stage="decode")
    floor = sum(floor_us(c, GPUS["h200"]) for c in costs)
    assert floor == pytest.approx(hand_us, rel=0.005)


def test_prefill_of_long_prompt_is_compute_bound() -> None:
    cfg = load_model_config("preset:llama-3.1-8b")
    costs = {c.operator: c for c in step_costs(cfg, batch=1, context=4096, stage="prefill")}
    gemm = costs["gate_up_proj"]
    assert gemm.flops / (989e12) > gemm.bytes / 4.8e12


def test_prefill_lm_head_computes_one_row_per_sequence() -> None:
    # the engine computes logits for each sequence's last token only, not for every prompt token
    cfg = load_model_config("preset:llama-3.1-8b")
    h, v, batch, context = 4096, 128256, 4, 512
    ops = {
        stage: {c.operator: c for c in step_costs(cfg, batch, context, stage)}
        for stage in ("prefill", "decode")
    }
    lm_head = ops["prefill"]["lm_head"]
    assert lm_head.flops == 2.0 * batch * h * v
    assert lm_head.bytes == (h * v + batch * (h + v)) * 2
    assert ops["decode"]["lm_head"] == lm_head.model_copy(update={"stage": "decode"})
    assert ops["prefill"]["down_proj"].flops == 2.0 * batch * context * 14336 * h * 32  # the rest: per token


def test_capacity_rounds_requests_up_to_whole_blocks() -> None:
    cfg = load_model_config("preset:llama-3.1-8b")
    assert kv_bytes_per_token(cfg) == 2 * 32 * 8 * 128 * 2  # 128 KiB per token
    cap = capacity(cfg, memory_gb=40, block_size=16, input_len=1000, output_len=100)
    assert cap.blocks_per_request == math.ceil(1100 / 16) == 69
    assert cap.num_blocks == int(40e9) // (131072 * 16)
    assert cap.max_concurrent_requests == cap.num_blocks // 69


def test_bad_inputs_name_the_field(tmp_path) -> None:
    with pytest.raises(ValueError, match="gpu"):
        gpu_spec("b300")
    with pytest.raises(ValueError, match="model"):
        load_model_config("preset:nope")
    spec = tmp_path / "gpu.json"
    spec.write_text('{"name": "X", "memory_bandwidth_tbs": 1.0, "bf16_tflops": 100, "memory_gb": 24}')
    assert gpu_spec(str(spec)).bf16_tflops == 100
