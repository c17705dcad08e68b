"""Session fixtures for the engine tests."""

from __future__ import annotations

import pytest
from engine_helpers import greedy_tokens, random_prompts

from perfloop.engine.llm import LLM


@pytest.fixture(scope="session")
def qwen3_reference() -> tuple[list[list[int]], list[list[int]]]:
    """16 mixed-length prompts and their tokens generated one at a time (no batching at all)."""
    prompts = random_prompts([3, 9, 17, 31, 40, 47, 64, 65, 80, 96, 100, 127, 150, 177, 200, 255], seed=7)
    llm = LLM("preset:tiny-qwen3", enable_prefix_caching=False, enable_chunked_prefill=False)
    return prompts, [greedy_tokens(llm, [p])[0] for p in prompts]
