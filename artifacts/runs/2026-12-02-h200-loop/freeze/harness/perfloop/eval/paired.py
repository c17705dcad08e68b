"""Candidate vs baseline on the same items: matched by id and prompt hash, flips counted both ways."""

from __future__ import annotations

from perfloop.ledger.eval_records import PairedComparison, TaskEvalRecord

FLOOR = 0.5  # a baseline under this is broken, not a bar (AMD Hyperloom's rule for GSM8K)


class UnpairedItems(ValueError):
    """The two evals did not score the same questions."""


DRIFT = {"float32": 1e-3, "bfloat16": 0.5, "float16": 0.25}  # per-choice loglikelihood, nats


def compare(
    base: TaskEvalRecord, cand: TaskEvalRecord, tolerance: float, drift_tolerance: float = float("inf")
) -> PairedComparison:
    """Reject a drop of more than `tolerance` (absolute accuracy), or any choice's loglikelihood moving
    more than `drift_tolerance` (a numerical change the accuracy alone can hide); every item must be in
    both runs."""
    by_id = {r.id: r for r in base.results}
    missing = [r.id for r in cand.results if r.id not in by_id] + [
        i for i in by_id if i not in {r.id for r in cand.results}
    ]
    changed = [r.id for r in cand.results if r.id in by_id and by_id[r.id].prompt_hash != r.prompt_hash]
    if missing or changed:
        raise UnpairedItems(
            f"items differ between runs: missing {missing[:5]}, changed prompts {changed[:5]}"
        )
    lost = [r.id for r in cand.results if by_id[r.id].correct and not r.correct]
    gained = [r.id for r in cand.results if not by_id[r.id].correct and r.correct]
    drop = base.accuracy - cand.accuracy
    drift = max(
        (abs(a - b) for r in cand.results for a, b in zip(r.scores, by_id[r.id].scores, strict=True)),
        default=0.0,
    )
    passed = drop <= tolerance + 1e-12 and drift <= drift_tolerance
    reason = (
        f"accuracy {cand.accuracy:.3f} vs baseline {base.accuracy:.3f} (drop {drop:+.3f}, tolerance "
        f"{tolerance:.3f}); {len(lost)} right->wrong, {len(gained)} wrong->right; loglikelihood drift "
        f"{drift:.2e} (tolerance {drift_tolerance:.0e})"
    )
    return PairedComparison(
        items=len(cand.results), baseline_accuracy=base.accuracy, candidate_accuracy=cand.accuracy,
        drop=round(drop, 6), correct_to_incorrect=lost, incorrect_to_correct=gained, tolerance=tolerance,
        max_score_drift=drift, drift_tolerance=drift_tolerance, passed=passed, reason=reason,
    )  # fmt: skip


def baseline_broken(base: TaskEvalRecord, floor: float = FLOOR) -> str | None:
    """Why the baseline cannot serve as a bar (None when it can)."""
    if base.accuracy < floor:
        return f"baseline broken: accuracy {base.accuracy:.3f} < floor {floor:.2f} on {base.items} items"
    return None
