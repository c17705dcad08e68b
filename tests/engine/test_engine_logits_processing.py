"""Penalties, bias, min_p, min_tokens, allowed ids, logprobs and parallel sampling in the engine.

Requests that use none of them keep their greedy tokens whatever shares the batch (batch invariance).
"""

from __future__ import annotations

from itertools import zip_longest

import pytest
import torch
from engine_helpers import GREEDY_32, greedy_tokens, random_prompts

from perfloop.engine.llm import LLM
from perfloop.engine.llm_engine import StepOutput
from perfloop.engine.sampler import RowContext, process_row
from perfloop.engine.sampling_params import SamplingParams

EOS = 257


def _greedy(**kw: object) -> SamplingParams:
    return SamplingParams(**{"max_tokens": 32, "temperature": 0.0, "ignore_eos": True, **kw})  # type: ignore[arg-type]


# One request per feature; each changes its own logits (or asks for logprobs) and nothing else.
FEATURES = [
    _greedy(presence_penalty=1.5, frequency_penalty=0.5),
    _greedy(repetition_penalty=1.8),
    _greedy(logit_bias={300: 100.0}),
    _greedy(allowed_token_ids=[65, 66, 67]),
    SamplingParams(max_tokens=32, temperature=1.0, min_p=0.2, seed=3, ignore_eos=True),
    SamplingParams(max_tokens=32, temperature=0.0, min_tokens=8),
    _greedy(logprobs=5, prompt_logprobs=3),
]


def _run(
    llm: LLM, requests: list[tuple[str, list[int], SamplingParams, str | None]]
) -> dict[str, list[StepOutput]]:
    engine = llm.engine
    for rid, prompt, params, parent in requests:
        engine.add_request(rid, prompt, params, parent)
    outputs: dict[str, list[StepOutput]] = {rid: [] for rid, *_ in requests}
    while engine.has_unfinished():
        for out in engine.step():
            outputs[out.request_id].append(out)
    return outputs


def _tokens(outputs: list[StepOutput]) -> list[int]:
    return [t for o in outputs for t in o.new_token_ids]


def test_plain_greedy_requests_unchanged_by_batched_feature_requests(qwen3_reference) -> None:
    prompts, alone = qwen3_reference
    llm = LLM("preset:tiny-qwen3")
    plain = [(f"plain-{i}", p, GREEDY_32, None) for i, p in enumerate(prompts[:8])]
    featured = [(f"feat-{i}", prompts[8 + i % 8], f, None) for i, f in enumerate(FEATURES)]
    siblings = [("parent", prompts[9], _greedy(), None), ("child", prompts[9], _greedy(), "parent")]
    mixed = [x for pair in zip_longest(plain, featured + siblings) for x in pair if x is not None]
    outputs = _run(llm, mixed)
    assert [_tokens(outputs[f"plain-{i}"]) for i in range(8)] == alone[:8]
    # Siblings of one prompt, greedy, agree with each other and with the prompt alone.
    assert _tokens(outputs["parent"]) == _tokens(outputs["child"]) == alone[9]


def test_each_feature_changes_what_it_should(qwen3_reference) -> None:
    prompts, alone = qwen3_reference
    llm = LLM("preset:tiny-qwen3")
    requests = [(f"f{i}", prompts[0], f, None) for i, f in enumerate(FEATURES)]
    out = {rid: _tokens(o) for rid, o in _run(llm, requests).items()}
    base = alone[0]
    assert len(set(base)) < len(base), "the greedy output repeats, so penalties have something to act on"
    assert out["f0"] != base and out["f1"] != base
    assert out["f2"] == [300] * 32
    assert set(out["f3"]) <= {65, 66, 67}
    assert out["f6"] == base


def test_min_tokens_keeps_eos_out_until_reached() -> None:
    llm = LLM("preset:tiny-qwen3")
    prompt = random_prompts([10], seed=21)[0]
    forced_eos = {EOS: 100.0}
    early = llm.generate([prompt], SamplingParams(max_tokens=20, temperature=0, logit_bias=forced_eos))[0]
    held = llm.generate(
        [prompt], SamplingParams(max_tokens=20, temperature=0, logit_bias=forced_eos, min_tokens=5)
    )[0]
    assert early.output_token_ids == [EOS] and early.finish_reason == "stop"
    assert len(held.output_token_ids) == 6 and held.output_token_ids[-1] == EOS
    assert EOS not in held.output_token_ids[:5] and held.finish_reason == "stop"


def test_min_p_one_keeps_only_the_top_token() -> None:
    llm = LLM("preset:tiny-qwen3")
    prompts = random_prompts([12, 30], seed=22)
    greedy = greedy_tokens(llm, prompts)
    sampled = llm.generate(
        prompts, SamplingParams(max_tokens=32, temperature=1.5, min_p=1.0, seed=5, ignore_eos=True)
    )
    assert [o.output_token_ids for o in sampled] == greedy


def test_penalty_math_matches_vllm_definition() -> None:
    row = torch.tensor([2.0, -2.0, 1.0, 0.5])
    ctx = RowContext(token_ids=[0, 1, 2, 2], num_prompt=2, stop_ids=[])
    rep = process_row(row, SamplingParams(repetition_penalty=2.0), ctx)
    assert rep.tolist() == [1.0, -4.0, 0.5, 0.5]  # prompt and output tokens; positive /, negative *
    pen = process_row(row, SamplingParams(presence_penalty=0.5, frequency_penalty=0.25), ctx)
    assert pen.tolist() == [2.0, -2.0, 1.0 - 0.5 - 0.5, 0.5]  # output only: token 2 seen twice


@pytest.mark.parametrize("budget", [512, 24])
def test_prompt_logprobs_chunked_or_not_equal_full_forward(budget: int) -> None:
    """Prompt logprobs cover every prompt position, whatever the prefill chunking."""
    prompt = random_prompts([70], seed=23)[0]
    llm = LLM("preset:tiny-qwen3", max_num_batched_tokens=budget)
    out = _run(llm, [("p", prompt, _greedy(max_tokens=2, prompt_logprobs=2), None)])["p"]
    records = out[0].prompt_logprobs
    assert records is not None and records[0] is None and len(records) == len(prompt)
    assert [r.token_id for r in records[1:]] == prompt[1:]
    reference = LLM("preset:tiny-qwen3", max_num_batched_tokens=512)
    ref = _run(reference, [("p", prompt, _greedy(max_tokens=2, prompt_logprobs=2), None)])["p"][
        0
    ].prompt_logprobs
    got = torch.tensor([r.logprob for r in records[1:]])
    want = torch.tensor([r.logprob for r in ref[1:]])
    assert torch.allclose(got, want, atol=1e-4)
    assert all(len(r.top) == 2 and r.top[0][1] >= r.logprob - 1e-6 for r in records[1:])


def test_siblings_share_the_prompt_blocks() -> None:
    prompt = random_prompts([80], seed=24)[0]
    llm = LLM("preset:tiny-qwen3", block_size=16)
    sampled = SamplingParams(max_tokens=8, temperature=1.0, ignore_eos=True)
    requests = [("s0", prompt, sampled, None)] + [(f"s{j}", prompt, sampled, "s0") for j in (1, 2)]
    outputs = _run(llm, requests)
    assert all(len(_tokens(outputs[f"s{j}"])) == 8 for j in range(3))
    # Each sibling found the parent's full prompt blocks (79 tokens -> 4 blocks of 16) cached.
    assert llm.engine.stats().prefix_cache_hits == 2 * 4 * 16
