"""torch CPU threads of an engine: a default that stays right on a small or busy CPU.

torch starts with one thread per physical core. On a 2-core machine that is measured 7x slower
for the tiny presets when anything else runs (artifacts/runs/2026-12-02-cpu-threads): threads
spin-wait on each other's cores. The default is therefore half the CPUs this process may run on,
so two engines side by side (an A/B on one host) never oversubscribe, and never more than the
process has already (OMP_NUM_THREADS, or `--torch-threads` of a benchmark that runs the engine
in-process).
"""

from __future__ import annotations

import os

import torch


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads() -> int:
    """Half the usable CPUs, at least 1, at most torch's current count."""
    return max(1, min(torch.get_num_threads(), usable_cpus() // 2))


def apply_threads(requested: int | None) -> int:
    """Set torch's CPU thread count to `requested` (None: the default) and return it."""
    threads = requested or default_threads()
    torch.set_num_threads(threads)
    return threads
