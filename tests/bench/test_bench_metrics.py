"""The metric math matches a hand-computed request timeline, key for key."""

from __future__ import annotations

import math

import pytest

from perfloop.bench.metrics import RequestRecord, compute_metrics, sglang_metrics


def _timeline() -> list[RequestRecord]:
    # r0: 4 tokens, r1: 2 tokens, r2: 1 token, r3 failed; duration 2 s.
    return [
        RequestRecord(
            index=0,
            success=True,
            prompt_len=10,
            requested_output_len=4,
            output_len=4,
            start=0.0,
            ttft=0.1,
            itl=[0.02, 0.03, 0.05],
            latency=0.2,
        ),
        RequestRecord(
            index=1,
            success=True,
            prompt_len=20,
            requested_output_len=2,
            output_len=2,
            start=0.5,
            ttft=0.2,
            itl=[0.1],
            latency=0.3,
        ),
        RequestRecord(
            index=2,
            success=True,
            prompt_len=30,
            requested_output_len=1,
            output_len=1,
            start=1.0,
            ttft=0.3,
            itl=[],
            latency=0.3,
        ),
        RequestRecord(index=3, success=False, error="boom", prompt_len=40, requested_output_len=5),
    ]


def test_counts_and_throughputs() -> None:
    m = compute_metrics(_timeline(), duration=2.0)
    assert m["completed"] == 3 and m["failed"] == 1
    assert m["total_input_tokens"] == 60 and m["total_output_tokens"] == 7
    assert m["request_throughput"] == pytest.approx(1.5)
    assert m["output_throughput"] == pytest.approx(3.5)
    assert m["total_token_throughput"] == pytest.approx(33.5)
    assert m["request_goodput"] is None
    assert m["max_output_tokens_per_s"] == 6 and m["max_concurrent_requests"] == 2


def test_latency_statistics_by_hand() -> None:
    m = compute_metrics(_timeline(), duration=2.0)
    assert m["mean_ttft_ms"] == pytest.approx(200.0)
    assert m["median_ttft_ms"] == pytest.approx(200.0)
    assert m["std_ttft_ms"] == pytest.approx(math.sqrt(20000 / 3))
    assert m["p90_ttft_ms"] == pytest.approx(280.0)
    assert m["p99_ttft_ms"] == pytest.approx(298.0)
    # TPOT over requests with more than one token: (0.2-0.1)/3 and (0.3-0.2)/1.
    assert m["mean_tpot_ms"] == pytest.approx((100 / 3 + 100) / 2)
    assert m["p90_tpot_ms"] == pytest.approx(100 / 3 + 0.9 * (100 - 100 / 3))
    # ITL pooled per chunk over all requests: 20, 30, 50, 100 ms.
    assert m["mean_itl_ms"] == pytest.approx(50.0)
    assert m["median_itl_ms"] == pytest.approx(40.0)
    assert m["p90_itl_ms"] == pytest.approx(85.0)
    assert m["mean_e2el_ms"] == pytest.approx(800 / 3)
    assert m["p50_e2el_ms"] == pytest.approx(300.0)


def test_goodput_counts_requests_meeting_every_slo() -> None:
    strict = compute_metrics(_timeline(), 2.0, goodput_slos_ms={"ttft": 250, "tpot": 50, "e2el": 1000})
    assert strict["request_goodput"] == pytest.approx(0.5)  # only r0
    # A one-token request has TPOT 0, so it passes any TPOT SLO.
    loose = compute_metrics(_timeline(), 2.0, goodput_slos_ms={"ttft": 300, "tpot": 150})
    assert loose["request_goodput"] == pytest.approx(1.5)


def test_vllm_key_order_and_empty_run() -> None:
    keys = list(compute_metrics(_timeline(), 2.0))
    assert keys[:6] == [
        "duration",
        "completed",
        "failed",
        "total_input_tokens",
        "total_output_tokens",
        "request_throughput",
    ]
    assert keys.index("mean_ttft_ms") < keys.index("median_ttft_ms") < keys.index("p99_ttft_ms")
    empty = compute_metrics([], 0.0)
    assert empty["mean_itl_ms"] == 0.0 and empty["request_throughput"] == 0.0


def test_sglang_names_and_mean_concurrency() -> None:
    s = sglang_metrics(_timeline(), 2.0)
    assert s["mean_e2e_latency_ms"] == pytest.approx(800 / 3)
    assert s["total_throughput"] == pytest.approx(33.5)
    assert s["input_throughput"] == pytest.approx(30.0)
    assert s["concurrency"] == pytest.approx(0.8 / 2.0)
    assert s["max_itl_ms"] == pytest.approx(100.0)
    assert s["p95_itl_ms"] == pytest.approx(50 + 0.85 * 50)


def test_max_output_tokens_per_s_counts_one_token_per_chunk_as_vllm() -> None:
    """vLLM buckets each chunk's arrival in its second; usage tokens beyond the chunks are not spread."""
    rec = RequestRecord(
        index=0, success=True, output_len=50, requested_output_len=50, start=0.0, ttft=0.5,
        itl=[0.4, 0.2, 0.2], latency=1.3,
    )  # fmt: skip
    m = compute_metrics([rec], duration=2.0)
    assert m["max_output_tokens_per_s"] == 2  # chunks at 0.5, 0.9 | 1.1, 1.3
    assert m["max_concurrent_requests"] == 1
