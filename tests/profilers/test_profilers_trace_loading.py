"""Trace loading: gzip or plain, exact nanoseconds, clear errors."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from conftest import CUDA_TRACE

from perfloop.profilers.trace import TraceFormatError, load_trace, to_ns


def test_to_ns_is_exact_at_epoch_sized_timestamps() -> None:
    assert to_ns(4455267716019.456) == 4455267716019456
    # torch writes µs of the monotonic clock with 3 decimals; below 2**52 ns-ulps every ns survives float64
    for frac in range(1000):
        assert to_ns(float(f"4455267716019.{frac:03d}")) == 4455267716019000 + frac
    assert to_ns(0.001) == 1


def test_gzip_and_plain_give_the_same_events(tmp_path: Path) -> None:
    gz = tmp_path / "t.json.gz"
    with open(CUDA_TRACE, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    a, b = load_trace(CUDA_TRACE), load_trace(gz)
    assert a.kernels == b.kernels and a.cpu_ops == b.cpu_ops
    assert a.base_time_ns == 1790857026000000000
    assert a.device_properties[0]["name"] == "NVIDIA H200"


def test_not_a_trace_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(TraceFormatError, match="bad.json"):
        load_trace(bad)
    with pytest.raises(TraceFormatError, match="does not exist"):
        load_trace(tmp_path / "missing.json")
