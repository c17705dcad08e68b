"""Dataset-free logprob consistency: the same tokens scored by different paths must agree.

Over seeded token-id prompts, each sequence is generated greedily with per-token logprobs (decode),
then re-scored in one prefill with `echo` (prefill); the same requests alone vs all at once (batch);
and sent twice, the second time hitting the prefix cache. Cache-state and batching bugs move these
numbers while a task score can stay put.
"""

from __future__ import annotations

import random
import statistics
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from perfloop.eval.client import Completions, EvalError
from perfloop.ledger.eval_records import ConsistencyCheck, ConsistencyRecord

THRESHOLDS = {"float32": 1e-3, "bfloat16": 0.15, "float16": 0.08}  # max |d logprob| per token


def prompts(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    """Seeded token-id prompts (ids above 100 avoid most special tokens)."""
    rng = random.Random(seed)
    return [[rng.randrange(100, vocab) for _ in range(length)] for _ in range(n)]


def _ids(tokens: list[str]) -> list[int]:
    if not all(t.startswith("token_id:") for t in tokens):
        raise EvalError("the server does not return token ids (`return_tokens_as_token_ids`)")
    return [int(t.split(":", 1)[1]) for t in tokens]


def decode(client: Completions, prompt: list[int], tokens: int) -> tuple[list[int], list[float]]:
    """Greedy tokens and their logprobs as decode steps produced them."""
    out = client.create(
        prompt=prompt, max_tokens=tokens, temperature=0, logprobs=1, return_tokens_as_token_ids=True,
        ignore_eos=True,
    )  # fmt: skip
    lp = out["choices"][0]["logprobs"]
    return _ids(lp["tokens"]), [float(x) for x in lp["token_logprobs"]]


def prefill(client: Completions, prompt: list[int], output: list[int]) -> list[float]:
    """The logprobs of `output` when prompt + output is scored in one prefill."""
    out = client.create(
        prompt=prompt + output, max_tokens=1, temperature=0, logprobs=1, echo=True,
        return_tokens_as_token_ids=True,
    )  # fmt: skip
    values = out["choices"][0]["logprobs"]["token_logprobs"]
    return [float(x) for x in values[len(prompt) : len(prompt) + len(output)]]


def _check(
    name: str, pairs: list[tuple[list[float], list[float]]], diverged: int, threshold: float
) -> ConsistencyCheck:
    diffs = sorted(abs(a - b) for xs, ys in pairs for a, b in zip(xs, ys, strict=False))
    worst = diffs[-1] if diffs else 0.0
    return ConsistencyCheck(
        check=name, tokens=len(diffs), max_abs_diff=worst,
        mean_abs_diff=statistics.fmean(diffs) if diffs else 0.0,
        p99_abs_diff=diffs[int(0.99 * (len(diffs) - 1))] if diffs else 0.0, diverged=diverged,
        threshold=threshold, passed=worst <= threshold and diverged == 0,
    )  # fmt: skip


def _common(
    a: tuple[list[int], list[float]], b: tuple[list[int], list[float]]
) -> tuple[list[float], list[float], bool]:
    """Logprobs of the shared greedy prefix of two generations, and whether they diverged."""
    n = next(
        (i for i, (x, y) in enumerate(zip(a[0], b[0], strict=False)) if x != y), min(len(a[0]), len(b[0]))
    )
    return a[1][:n], b[1][:n], n < min(len(a[0]), len(b[0]))


def check_consistency(
    client: Completions, target: str, dtype: str, n: int = 8, length: int = 48, tokens: int = 32,
    vocab: int = 32000, seed: int = 0,
) -> ConsistencyRecord:  # fmt: skip
    """Decode vs prefill, alone vs batch, cold vs prefix-cache hit; thresholds by dtype."""
    threshold = THRESHOLDS.get(dtype, THRESHOLDS["bfloat16"])
    ps = prompts(n, length, vocab, seed)
    alone = [decode(client, p, tokens) for p in ps]
    with ThreadPoolExecutor(max_workers=n) as pool:
        batch = list(pool.map(lambda p: decode(client, p, tokens), ps))
    cached = [decode(client, p, tokens) for p in ps]  # the prompts' blocks are cached by now
    refill = [prefill(client, p, ids) for p, (ids, _) in zip(ps, alone, strict=True)]
    checks = [
        _check(
            "decode_vs_prefill", [(lp, rf) for (_, lp), rf in zip(alone, refill, strict=True)], 0, threshold
        )
    ]
    for name, other in (("alone_vs_batch", batch), ("cold_vs_prefix_cache", cached)):
        common = [_common(a, b) for a, b in zip(alone, other, strict=True)]
        checks.append(_check(name, [(x, y) for x, y, _ in common], sum(d for *_, d in common), threshold))
    return ConsistencyRecord(
        target=target,
        prompts=n,
        tokens_per_prompt=tokens,
        checks=checks,
        passed=all(c.passed for c in checks),
    )


def summary(record: ConsistencyRecord) -> list[dict[str, Any]]:
    """Rows for display."""
    return [c.model_dump(exclude={"schema_version"}) for c in record.checks]
