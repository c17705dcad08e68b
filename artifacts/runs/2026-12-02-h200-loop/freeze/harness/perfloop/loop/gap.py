"""GAP: behind, tied or ahead, decided from the interval; the objective decides COMPLETE."""

from __future__ import annotations

from perfloop.ledger.records import BenchRecord, GapRecord
from perfloop.loop.spec import GoalSpec


def decide_gap(spec: GoalSpec, bench: BenchRecord) -> GapRecord:
    """Position of the target (B) against the peer (A) on the goal metric, and whether the goal is met."""
    cmp = bench.metrics[spec.metric]
    threshold = spec.stop.gap_threshold
    # Ratios are oriented so that > 1 means the target is better.
    low, mid, high = _oriented(cmp.ci_low, cmp.median_ratio, cmp.ci_high, cmp.higher_is_better)
    if high < 1 - threshold:
        position = "behind"
    elif low > 1 + threshold:
        position = "ahead"
    else:
        position = "tied"
    met, reason = _objective(spec, position, low, cmp.b_median, cmp.higher_is_better)
    return GapRecord(
        metric=spec.metric,
        peer=bench.a_name,
        median_ratio=mid,
        ci_low=low,
        ci_high=high,
        threshold=threshold,
        position=position,
        objective_met=met,
        reason=reason,
    )


def _oriented(low: float, mid: float, high: float, higher_is_better: bool) -> tuple[float, float, float]:
    if higher_is_better:
        return low, mid, high
    return 1 / high, 1 / mid, 1 / low


def _objective(spec: GoalSpec, position: str, low: float, value: float, higher: bool) -> tuple[bool, str]:
    obj = spec.objective
    if obj.kind == "beat_peer":
        if obj.margin > 0:
            met = low >= 1 + obj.margin
            return met, f"target/peer interval low {low:.4f} vs required {1 + obj.margin:.4f}"
        met = position != "behind"
        phrase = {"behind": "behind", "tied": "level with", "ahead": "ahead of"}[position]
        return met, f"target is {phrase} the peer (threshold {spec.stop.gap_threshold:.2%})"
    goal = obj.value if obj.kind == "reach_value" else obj.fraction * (obj.roofline_value or 0.0)
    met = value >= goal if higher else value <= goal
    return met, f"target {spec.metric} median {value:.4g} vs goal {goal:.4g}"
