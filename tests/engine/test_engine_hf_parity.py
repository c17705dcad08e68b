"""Greedy outputs and first-step logits match HF transformers on the same weights (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch
import transformers
from engine_helpers import GREEDY_32, greedy_tokens, random_prompts

from perfloop.engine.llm import LLM
from perfloop.engine.models.presets import resolve_model
from perfloop.engine.scheduler import ScheduledBatch
from perfloop.engine.sequence import Sequence

PROMPT_LENGTHS = [1, 5, 17, 33, 64, 100, 130, 300]


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-qwen2", "tiny-qwen3"])
def test_greedy_tokens_and_logits_match_hf(preset: str) -> None:
    path = resolve_model(f"preset:{preset}")
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    llm = LLM(f"preset:{preset}")
    prompts = random_prompts(PROMPT_LENGTHS)
    ours = greedy_tokens(llm, prompts)
    for prompt, tokens in zip(prompts, ours, strict=True):
        ref = hf.generate(
            torch.tensor([prompt]),
            max_new_tokens=32,
            min_new_tokens=32,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
        )
        assert tokens == ref[0, len(prompt) :].tolist(), f"{preset}: prompt of {len(prompt)} tokens diverged"

    # First-step logits of every prompt in one batch, against HF's last-position logits.
    engine = llm.engine
    seqs = [Sequence(f"logits-{i}", p, GREEDY_32) for i, p in enumerate(prompts)]
    for s in seqs:
        assert engine.blocks.allocate(s, s.num_tokens)
    try:
        logits = engine.runner.logits_for(ScheduledBatch(seqs, [s.num_tokens for s in seqs]))
    finally:
        for s in seqs:
            engine.blocks.free_seq(s)
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            ref = hf(torch.tensor([prompt])).logits[0, -1]
            torch.testing.assert_close(logits[i], ref, atol=1e-4, rtol=0)


def test_llama3_rope_scaling_is_active() -> None:
    """tiny-llama's llama3 scaling changes the low frequencies (so the parity test above covers it)."""
    from perfloop.engine.models.layers import rope_inv_freq
    from perfloop.engine.models.presets import PRESETS

    cfg = PRESETS["tiny-llama"]
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    plain = rope_inv_freq(head_dim, cfg["rope_theta"], None)
    scaled = rope_inv_freq(head_dim, cfg["rope_theta"], cfg["rope_scaling"])
    assert not torch.equal(plain, scaled)
    assert torch.equal(plain[0], scaled[0])  # the highest frequency is untouched
