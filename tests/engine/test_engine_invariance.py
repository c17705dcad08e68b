"""Batching, prefix caching, chunked prefill and preemption never change greedy outputs."""

from __future__ import annotations

from engine_helpers import greedy_tokens, random_prompts

from perfloop.engine.llm import LLM


def test_batch_of_16_equals_each_prompt_alone(qwen3_reference) -> None:
    prompts, alone = qwen3_reference
    llm = LLM("preset:tiny-qwen3", enable_prefix_caching=False, enable_chunked_prefill=False)
    assert greedy_tokens(llm, prompts) == alone
    assert llm.engine.stats().peak_running == 16


def test_prefix_caching_on_equals_off_and_hits() -> None:
    shared = random_prompts([96], seed=3)[0]
    prompts = [shared + tail for tail in random_prompts([5, 20, 33, 40], seed=4)]
    off = LLM("preset:tiny-qwen3", enable_prefix_caching=False)
    on = LLM("preset:tiny-qwen3", enable_prefix_caching=True)
    expected = greedy_tokens(off, prompts)
    # One at a time, so later prompts find the shared blocks already computed.
    got = [greedy_tokens(on, [p])[0] for p in prompts]
    assert got == expected
    stats = on.engine.stats()
    assert stats.prefix_cache_hits >= 3 * 96
    assert off.engine.stats().prefix_cache_hits == 0


def test_chunked_prefill_with_tiny_budget_equals_unchunked(qwen3_reference) -> None:
    prompts, alone = qwen3_reference
    llm = LLM("preset:tiny-qwen3", enable_prefix_caching=False, max_num_batched_tokens=24)
    assert greedy_tokens(llm, prompts) == alone
    assert llm.engine.stats().num_prefill_chunks > 16


def test_preemption_under_a_small_kv_pool_keeps_outputs(qwen3_reference) -> None:
    prompts, alone = qwen3_reference
    # 20 blocks of 16 tokens: every request fits alone, 16 together cannot.
    llm = LLM("preset:tiny-qwen3", enable_prefix_caching=False, num_kv_blocks=20, block_size=16)
    assert greedy_tokens(llm, prompts) == alone
    stats = llm.engine.stats()
    assert stats.num_preemptions > 0
    assert stats.kv_blocks_used == 0


def test_all_three_features_together(qwen3_reference) -> None:
    prompts, alone = qwen3_reference
    llm = LLM("preset:tiny-qwen3", num_kv_blocks=36, max_num_batched_tokens=40, block_size=8)
    assert greedy_tokens(llm, prompts + prompts[:4]) == alone + alone[:4]
    stats = llm.engine.stats()
    assert stats.num_preemptions > 0 and stats.num_prefill_chunks > 0
