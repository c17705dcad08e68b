"""The precision fairness check: sides serving different weight precisions are not compared by default.

fp32 against Q4_1 measures quantisation as much as the engine. `check_precisions`
refuses such a comparison naming both precisions, unless it is explicitly allowed; then
it returns a note that every table and report carries.
"""

from __future__ import annotations

from collections.abc import Sequence

from perfloop.bench.fingerprint import WeightsInfo

ALLOW_FLAG = "--allow-precision-mismatch"


class PrecisionMismatch(ValueError):
    """Two sides serve weights of different precisions."""


def describe(weights: WeightsInfo) -> str:
    """`fp32 (safetensors)`."""
    return f"{weights.precision} ({weights.format})"


def check_precisions(sides: Sequence[tuple[str, WeightsInfo | None]], allow: bool = False) -> str | None:
    """None when all known precisions agree; else raise, or (allowed) the label for reports."""
    known = [(label, w) for label, w in sides if w is not None]
    if len({w.precision for _, w in known}) <= 1:
        return None
    listing = ", ".join(f"{label} serves {describe(w)}" for label, w in known)
    if not allow:
        raise PrecisionMismatch(
            f"precision mismatch: {listing}; refusing to compare (pass {ALLOW_FLAG} to compare anyway)"
        )
    return f"PRECISION MISMATCH (allowed): {listing}"
