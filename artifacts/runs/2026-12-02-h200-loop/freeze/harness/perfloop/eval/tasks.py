"""Task eval: each item's choices scored by loglikelihood, through a server or HF transformers alike.

Both scorers select the continuation's tokens the same way (tokens that start at or after the end of
the context), so the same weights give the same answer item by item whichever path scores them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from perfloop.eval.client import Completions, continuation_logprob
from perfloop.eval.items import Item
from perfloop.ledger.eval_records import ItemResult, TaskEvalRecord

Scorer = Callable[[str, str], float]


def server_scorer(client: Completions) -> Scorer:
    """log P(continuation | context) from a served model's echoed logprobs."""
    return lambda context, continuation: continuation_logprob(client, context, continuation)[0]


def hf_scorer(model_dir: Path, dtype: torch.dtype = torch.float32) -> Scorer:
    """The same quantity from HF transformers on the same weights, in this process."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()

    def score(context: str, continuation: str) -> float:
        enc = tok(context + continuation, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        with torch.no_grad():
            logp = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
        picked = [i for i in range(1, len(ids)) if offsets[i][0] >= len(context)]
        return sum(logp[i - 1, ids[i]].item() for i in picked)

    return score


def score_items(
    items: list[Item], scorer: Scorer, progress: Callable[[int], None] | None = None
) -> list[ItemResult]:
    """Every item: each choice's loglikelihood, the argmax, right or wrong. No item is ever dropped."""
    results = []
    for n, item in enumerate(items):
        scores = [scorer(item.context, choice) for choice in item.choices]
        pred = max(range(len(scores)), key=scores.__getitem__)
        results.append(
            ItemResult(
                id=item.id, prompt_hash=item.prompt_hash, scores=[round(s, 6) for s in scores],
                pred=pred, answer=item.answer, correct=pred == item.answer,
            )
        )  # fmt: skip
        if progress is not None:
            progress(n + 1)
    return results


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion k / n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def task_record(results: list[ItemResult], target: str) -> TaskEvalRecord:
    """Accuracy with its interval over item results."""
    k = sum(r.correct for r in results)
    low, high = wilson(k, len(results))
    return TaskEvalRecord(
        target=target, items=len(results), correct=k, accuracy=k / len(results) if results else 0.0,
        low=low, high=high, results=results,
    )  # fmt: skip
