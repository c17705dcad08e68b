"""Seeded sampling is reproducible and independent of batching; top-k=1 equals greedy."""

from __future__ import annotations

from engine_helpers import greedy_tokens, random_prompts

from perfloop.engine.llm import LLM
from perfloop.engine.sampling_params import SamplingParams


def test_seeded_sampling_reproducible_and_batch_independent() -> None:
    prompts = random_prompts([8, 30, 50], seed=11)
    llm = LLM("preset:tiny-qwen3")
    params = [SamplingParams(max_tokens=24, temperature=1.0, top_p=0.9, top_k=50, seed=s, ignore_eos=True)
              for s in (1, 2, 3)]  # fmt: skip
    first = [o.output_token_ids for o in llm.generate(prompts, params)]
    again = [o.output_token_ids for o in llm.generate(prompts, params)]
    alone = [llm.generate([p], [s])[0].output_token_ids for p, s in zip(prompts, params, strict=True)]
    assert first == again == alone
    other_seed = llm.generate([prompts[0]], [SamplingParams(max_tokens=24, temperature=1.0, seed=99)])
    assert other_seed[0].output_token_ids != first[0]


def test_top_k_one_equals_greedy() -> None:
    prompts = random_prompts([4, 40], seed=12)
    llm = LLM("preset:tiny-llama")
    greedy = greedy_tokens(llm, prompts)
    topk = [o.output_token_ids for o in llm.generate(
        prompts, SamplingParams(max_tokens=32, temperature=0.8, top_k=1, ignore_eos=True))]  # fmt: skip
    assert topk == greedy


def test_stop_token_ids_and_eos() -> None:
    llm = LLM("preset:tiny-qwen3")
    prompt = random_prompts([20], seed=13)
    free = greedy_tokens(llm, prompt)[0]
    stop = free[5]
    out = llm.generate(
        prompt, SamplingParams(max_tokens=32, temperature=0, stop_token_ids=[stop], ignore_eos=True)
    )
    assert out[0].finish_reason == "stop"
    assert out[0].output_token_ids == free[: free.index(stop) + 1]


def test_a_row_with_nothing_to_sample_takes_its_top_logit_instead_of_raising() -> None:
    import torch

    from perfloop.engine.sampler import sample
    from perfloop.engine.sampling_params import SamplingParams

    # Row 0: every token banned (all -inf) would make multinomial raise and stop the engine.
    logits = torch.tensor([[float("-inf")] * 4, [0.0, 60.0, 0.0, 0.0]])
    params = [SamplingParams(temperature=0.7), SamplingParams(temperature=1.0)]
    out = sample(logits, params, [None, None], torch.Generator().manual_seed(0))
    assert 0 <= int(out[0]) < 4
    assert int(out[1]) == 1  # a normal row still samples (exp(60) dominates)
