"""Arrival schedules follow vLLM: seeded, gamma gaps, last arrival at N/rate."""

from __future__ import annotations

import numpy as np
import pytest

from perfloop.bench.arrivals import arrival_times


def test_same_seed_same_schedule_and_different_seed_differs() -> None:
    assert arrival_times(50, 4.0, 1.0, seed=7) == arrival_times(50, 4.0, 1.0, seed=7)
    assert arrival_times(50, 4.0, 1.0, seed=7) != arrival_times(50, 4.0, 1.0, seed=8)


def test_last_arrival_lands_at_n_over_rate() -> None:
    for burstiness in (0.5, 1.0, 3.0):
        times = arrival_times(37, 5.0, burstiness, seed=1)
        assert times[-1] == pytest.approx(37 / 5.0)
        assert all(b >= a for a, b in zip(times, times[1:], strict=False))


def test_poisson_gaps_have_mean_one_over_rate_and_unit_cv() -> None:
    gaps = np.diff([0.0, *arrival_times(20000, 10.0, 1.0, seed=3)])
    assert gaps.mean() == pytest.approx(0.1, rel=1e-9)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03)


def test_burstiness_sets_the_spread() -> None:
    smooth = np.diff(arrival_times(20000, 10.0, 4.0, seed=3))
    assert smooth.std() / smooth.mean() == pytest.approx(0.5, abs=0.03)


def test_infinite_rate_sends_everything_at_once_and_bad_rate_is_named() -> None:
    assert arrival_times(4, float("inf")) == [0.0] * 4
    with pytest.raises(ValueError, match="request_rate"):
        arrival_times(4, 0.0)
    with pytest.raises(ValueError, match="burstiness"):
        arrival_times(4, 1.0, burstiness=0)
