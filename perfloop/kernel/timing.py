"""Interleaved A/B timing of two kernels on the same inputs: CUDA events on a GPU, the host clock elsewhere.

Each trial times both sides back to back, alternating which goes first, with the inner loop amplified
until one side's loop lasts at least `min_inner_ms` (so launch and event overheads are amortised).
Inputs rotate over enough copies to exceed the L2 cache, so weights come from memory as in production.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from perfloop.kernel.harness import Harness
from perfloop.kernel.task import Timing

ROTATE_BYTES = 256 << 20  # larger than any current GPU's L2
MAX_COPIES = 16


@dataclass(frozen=True)
class PairTiming:
    """Per-call microseconds of each side, one value per trial, and the ratios of paired trials."""

    baseline_us: list[float]
    candidate_us: list[float]
    iters: int

    @property
    def speedups(self) -> list[float]:
        """baseline / candidate per trial (> 1: the candidate is faster)."""
        return [b / c for b, c in zip(self.baseline_us, self.candidate_us, strict=True)]

    @property
    def speedup(self) -> float:
        """Median baseline time over median candidate time."""
        return statistics.median(self.baseline_us) / statistics.median(self.candidate_us)


def input_sets(harness: Harness, params: dict[str, Any], device: torch.device) -> list[dict[str, Any]]:
    """Copies of one row's inputs with different seeds, together larger than ROTATE_BYTES."""
    sets = [harness.inputs(params, device, seed=0)]
    size = sum(t.numel() * t.element_size() for t in sets[0].values() if isinstance(t, torch.Tensor))
    copies = 1 if device.type != "cuda" else min(MAX_COPIES, max(1, -(-ROTATE_BYTES // max(size, 1))))
    sets += [harness.inputs(params, device, seed=s) for s in range(1, copies)]
    return sets


def _loop(fn: Callable[..., None], sets: list[dict[str, Any]], iters: int, device: torch.device) -> float:
    """Seconds per call of `iters` calls cycling over the input sets."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(iters):
            fn(**sets[i % len(sets)])
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / iters
    t0 = time.perf_counter()
    for i in range(iters):
        fn(**sets[i % len(sets)])
    return (time.perf_counter() - t0) / iters


def amplified_iters(
    fn: Callable[..., None], sets: list[dict[str, Any]], cfg: Timing, device: torch.device
) -> int:
    """`cfg.iters`, raised until one loop lasts at least `cfg.min_inner_ms`."""
    per_call = _loop(fn, sets, max(1, cfg.iters // 10), device)
    needed = int(cfg.min_inner_ms / 1e3 / max(per_call, 1e-9)) + 1
    return max(cfg.iters, needed)


def time_pair(
    base_fn: Callable[..., None],
    cand_fn: Callable[..., None],
    sets: list[dict[str, Any]],
    cfg: Timing,
    device: torch.device,
) -> PairTiming:
    """Warm both sides, then `cfg.trials` interleaved trials (ABBA order)."""
    for fn in (base_fn, cand_fn):
        for i in range(cfg.warmup):
            fn(**sets[i % len(sets)])
    iters = max(amplified_iters(base_fn, sets, cfg, device), amplified_iters(cand_fn, sets, cfg, device))
    base, cand = [], []
    for trial in range(cfg.trials):
        order = ((base, base_fn), (cand, cand_fn))
        for out, fn in order if trial % 2 == 0 else order[::-1]:
            out.append(_loop(fn, sets, iters, device) * 1e6)
    return PairTiming(baseline_us=base, candidate_us=cand, iters=iters)
