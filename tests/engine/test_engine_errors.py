"""Bad input gets a clear error naming the problem, and the engine keeps serving."""

from __future__ import annotations

import re

import pytest

from perfloop.engine.config import EngineConfig
from perfloop.engine.errors import EngineInputError
from perfloop.engine.llm_engine import LLMEngine
from perfloop.engine.sampling_params import SamplingParams

CASES = [
    ("too-long", list(range(10)) * 30, SamplingParams(max_tokens=4), "prompt", "context limit"),
    ("zero-max", [1, 2, 3], SamplingParams(max_tokens=0), "max_tokens", "at least 1"),
    ("bad-id", [1, 9999, 3], SamplingParams(max_tokens=4), "prompt", "outside the vocabulary"),
    ("empty", [], SamplingParams(max_tokens=4), "prompt", "empty"),
    ("empty-text", "", SamplingParams(max_tokens=4), "prompt", "empty"),
    ("never-fits", [1] * 100, SamplingParams(max_tokens=150), "max_tokens", "KV cache"),
    ("neg-temp", [1], SamplingParams(temperature=-1.0), "temperature", ">= 0"),
    ("top-p", [1], SamplingParams(top_p=0.0), "top_p", "(0, 1]"),
]


def test_bad_requests_fail_clearly_and_good_ones_still_complete() -> None:
    engine = LLMEngine(
        EngineConfig(model="preset:tiny-qwen3", max_model_len=256, num_kv_blocks=12, block_size=16)
    )
    engine.add_request("good-1", [5, 6, 7], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))
    for name, prompt, params, param, words in CASES:
        with pytest.raises(EngineInputError, match=re.escape(words)) as info:
            engine.add_request(name, prompt, params)
        assert info.value.param == param, name
    with pytest.raises(EngineInputError, match="already in use"):
        engine.add_request("good-1", [1], SamplingParams())
    engine.add_request(
        "good-2", "still serving", SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    )
    done = {}
    while engine.has_unfinished():
        for out in engine.step():
            if out.finished:
                done[out.request_id] = out.finish_reason
    assert done == {"good-1": "length", "good-2": "length"}
    assert engine.stats().kv_blocks_used == 0


def test_unknown_architecture_is_named(tmp_path) -> None:
    from perfloop.engine.models.config import ModelConfig

    with pytest.raises(ValueError, match="MambaForCausalLM"):
        ModelConfig.from_hf({"architectures": ["MambaForCausalLM"]})


def test_abort_frees_blocks_at_once() -> None:
    engine = LLMEngine(EngineConfig(model="preset:tiny-qwen3"))
    engine.add_request("r", list(range(100)), SamplingParams(max_tokens=50, temperature=0, ignore_eos=True))
    engine.step()
    assert engine.stats().kv_blocks_used > 0
    assert engine.abort("r")
    assert engine.stats().kv_blocks_used == 0
    assert not engine.has_unfinished()
    assert not engine.abort("r")
