"""Helpers for the engine tests: prompts of varied lengths and a greedy runner."""

from __future__ import annotations

import torch

from perfloop.engine.llm import LLM
from perfloop.engine.sampling_params import SamplingParams

GREEDY_32 = SamplingParams(max_tokens=32, temperature=0.0, ignore_eos=True)


def random_prompts(lengths: list[int], vocab: int = 512, seed: int = 1) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in lengths]


def greedy_tokens(llm: LLM, prompts: list[list[int]], params: SamplingParams = GREEDY_32) -> list[list[int]]:
    return [o.output_token_ids for o in llm.generate(prompts, params)]
