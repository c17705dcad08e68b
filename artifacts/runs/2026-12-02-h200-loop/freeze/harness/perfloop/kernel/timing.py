"""Interleaved A/B timing of two kernels on the same inputs: CUDA events on a GPU, the host clock elsewhere.

Each trial times both sides back to back, alternating which goes first. On a GPU each side's inner loop
is a CUDA graph of calls, grown until one replay lasts at least `min_inner_ms`, so events and launches
are amortised and host-side wrapper cost is not measured; on a CPU (tests) the host clock times a loop.
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
    def baseline_median_us(self) -> float:
        """Median per-call time of the baseline."""
        return statistics.median(self.baseline_us)

    @property
    def candidate_median_us(self) -> float:
        """Median per-call time of the candidate."""
        return statistics.median(self.candidate_us)

    @property
    def speedup(self) -> float:
        """Median baseline time over median candidate time."""
        return self.baseline_median_us / self.candidate_median_us


def input_sets(harness: Harness, params: dict[str, Any], device: torch.device) -> list[dict[str, Any]]:
    """Copies of one row's inputs with different seeds, together larger than ROTATE_BYTES."""
    sets = [harness.inputs(params, device, seed=0)]
    size = sum(t.numel() * t.element_size() for t in sets[0].values() if isinstance(t, torch.Tensor))
    copies = 1 if device.type != "cuda" else min(MAX_COPIES, max(1, -(-ROTATE_BYTES // max(size, 1))))
    sets += [harness.inputs(params, device, seed=s) for s in range(1, copies)]
    return sets


def _host_loop(fn: Callable[..., None], sets: list[dict[str, Any]], iters: int) -> float:
    """Seconds per call of `iters` calls cycling over the input sets, by the host clock."""
    t0 = time.perf_counter()
    for i in range(iters):
        fn(**sets[i % len(sets)])
    return (time.perf_counter() - t0) / iters


class GraphLoop:
    """`iters` calls captured in one CUDA graph: replays time device work only, not Python launch cost
    (a lighter wrapper must not look like a faster kernel), as the engine runs its decode steps."""

    def __init__(self, fn: Callable[..., None], sets: list[dict[str, Any]], iters: int, device: torch.device):
        self.iters = iters
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            fn(**sets[0])  # compile and allocate outside the capture
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            for i in range(iters):
                fn(**sets[i % len(sets)])

    def seconds_per_call(self) -> float:
        """One replay, timed with CUDA events."""
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self.graph.replay()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / self.iters


def _graph_loop(
    fn: Callable[..., None], sets: list[dict[str, Any]], cfg: Timing, device: torch.device
) -> GraphLoop:
    """A graph of at least `cfg.iters` calls, grown until one replay lasts `cfg.min_inner_ms`."""
    loop = GraphLoop(fn, sets, cfg.iters, device)
    for _ in range(cfg.warmup):
        loop.graph.replay()
    per_call = loop.seconds_per_call()
    needed = int(cfg.min_inner_ms / 1e3 / max(per_call, 1e-9)) + 1
    return loop if needed <= cfg.iters else GraphLoop(fn, sets, needed, device)


def time_pair(
    base_fn: Callable[..., None],
    cand_fn: Callable[..., None],
    sets: list[dict[str, Any]],
    cfg: Timing,
    device: torch.device,
) -> PairTiming:
    """`cfg.trials` interleaved trials (ABBA order) of both sides, after a warm-up."""
    if device.type == "cuda":
        loops = (_graph_loop(base_fn, sets, cfg, device), _graph_loop(cand_fn, sets, cfg, device))
        timers = tuple(loop.seconds_per_call for loop in loops)
        iters = max(loop.iters for loop in loops)
    else:
        for fn in (base_fn, cand_fn):
            _host_loop(fn, sets, cfg.warmup)
        iters = cfg.iters
        timers = (lambda: _host_loop(base_fn, sets, iters), lambda: _host_loop(cand_fn, sets, iters))
    base: list[float] = []
    cand: list[float] = []
    for trial in range(cfg.trials):
        order = ((base, timers[0]), (cand, timers[1]))
        for out, timer in order if trial % 2 == 0 else order[::-1]:
            out.append(timer() * 1e6)
    return PairTiming(baseline_us=base, candidate_us=cand, iters=iters)
