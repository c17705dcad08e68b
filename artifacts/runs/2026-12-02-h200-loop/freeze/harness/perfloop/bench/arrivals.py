"""Request arrival schedules, the way `vllm bench serve` draws them.

`arrival_times(n, rate, burstiness, seed)` returns each request's send offset in seconds
from the start of the run. `rate=inf` sends everything at t=0. Otherwise the gaps are
gamma(shape=burstiness, scale=1/(rate*burstiness)) (burstiness 1.0 = Poisson), summed,
and rescaled so the last arrival lands at exactly n/rate: the run's offered load is the
asked rate, whatever the draw.
"""

from __future__ import annotations

import math

import numpy as np


def arrival_times(n: int, rate: float, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """Send offsets (seconds) for n requests at `rate` requests/s with gamma `burstiness`."""
    if n < 0:
        raise ValueError("num_prompts must be >= 0")
    if rate <= 0:
        raise ValueError(f"request_rate must be > 0 (inf for all at once), got {rate}")
    if burstiness <= 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    if math.isinf(rate) or n == 0:
        return [0.0] * n
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=n)
    times = np.cumsum(gaps)
    times *= (n / rate) / times[-1]
    return times.tolist()
