"""Serving metrics with the exact definitions of `vllm bench serve` (and SGLang's names).

Per request (client side, `time.perf_counter`, `start` taken just before the request):
TTFT = first content chunk - start; ITL = gaps between later chunks (per chunk, pooled
over all requests); E2E latency = last chunk - start; TPOT = (latency - ttft) /
(output_len - 1) for requests with output_len > 1. Statistics are numpy mean, median,
std (population) and linearly interpolated percentiles, times 1000 for ms; an empty
list gives 0. Goodput counts requests meeting every given SLO (TPOT 0 when output_len
<= 1) per second of duration, and is None without SLOs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")
PERCENTILES = (50, 90, 95, 99)


class RequestRecord(BaseModel):
    """One finished (or failed) request; a row of the per-request sidecar JSONL."""

    model_config = ConfigDict(extra="forbid")

    index: int
    success: bool
    error: str | None = None
    prompt_len: int = 0
    requested_output_len: int = 0
    output_len: int = 0
    output_len_source: Literal["usage", "tokens", "chunks", "none"] = "none"
    start: float = Field(0.0, description="Send time, seconds after the run started.")
    ttft: float = 0.0
    itl: list[float] = Field(default_factory=list)
    latency: float = 0.0
    output_ids: list[int] | None = Field(
        None, description="Generated token ids, where the backend sees them (the loop checks them)."
    )

    def tpot(self) -> float:
        """Time per output token after the first; 0 when output_len <= 1."""
        if self.output_len <= 1:
            return 0.0
        return (self.latency - self.ttft) / (self.output_len - 1)


def _per_s(amount: float, duration: float) -> float:
    """A rate over the run; 0 for an empty run (no NaN in result files)."""
    return amount / duration if duration > 0 else 0.0


def _stats(name: str, values_s: Sequence[float], percentiles: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values_s, dtype=float) * 1000.0
    empty = arr.size == 0
    out = {
        f"mean_{name}_ms": 0.0 if empty else float(np.mean(arr)),
        f"median_{name}_ms": 0.0 if empty else float(np.median(arr)),
        f"std_{name}_ms": 0.0 if empty else float(np.std(arr)),
    }
    for p in percentiles:
        word = str(int(p)) if int(p) == p else str(p)
        out[f"p{word}_{name}_ms"] = 0.0 if empty else float(np.percentile(arr, p))
    return out


def _is_good(rec: RequestRecord, slos_ms: dict[str, float]) -> bool:
    values = {"ttft": rec.ttft, "tpot": rec.tpot(), "e2el": rec.latency}
    return all(values[m] * 1000.0 <= slo for m, slo in slos_ms.items())


def _token_times(rec: RequestRecord) -> list[float]:
    """Absolute chunk times of a request (run clock)."""
    first = rec.start + rec.ttft
    return [first, *(first + float(t) for t in np.cumsum(rec.itl))]


def _peaks(done: list[RequestRecord]) -> tuple[float, int]:
    """vLLM's max_output_tokens_per_s and max_concurrent_requests.

    Each streamed chunk counts one token in the one-second bucket (from the earliest start) it
    arrived in; a request is active in every bucket from its start to its end.
    """
    if not done:
        return 0.0, 0
    origin = min(r.start for r in done)
    end = max(r.start + r.latency for r in done)
    buckets = int(np.ceil(end - origin)) + 1
    tokens = np.zeros(buckets)
    active = np.zeros(buckets, dtype=int)
    for rec in done:
        for t in _token_times(rec):
            tokens[int(t - origin)] += 1
        active[int(rec.start - origin) : int(rec.start + rec.latency - origin) + 1] += 1
    return float(tokens.max()), int(active.max())


def compute_metrics(
    records: Sequence[RequestRecord],
    duration: float,
    goodput_slos_ms: dict[str, float] | None = None,
    percentiles: Sequence[float] = PERCENTILES,
) -> dict[str, float | int | None]:
    """vLLM's result keys, in vLLM's order, from per-request records and the run duration."""
    done = [r for r in records if r.success]
    total_in = sum(r.prompt_len for r in done)
    total_out = sum(r.output_len for r in done)
    goodput = None
    if goodput_slos_ms:
        goodput = _per_s(sum(_is_good(r, goodput_slos_ms) for r in done), duration)
    peak_tokens, peak_requests = _peaks(done)
    out: dict[str, float | int | None] = {
        "duration": duration,
        "completed": len(done),
        "failed": len(records) - len(done),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": _per_s(len(done), duration),
        "request_goodput": goodput,
        "output_throughput": _per_s(total_out, duration),
        "total_token_throughput": _per_s(total_in + total_out, duration),
        "max_output_tokens_per_s": peak_tokens,
        "max_concurrent_requests": peak_requests,
    }
    series = {
        "ttft": [r.ttft for r in done],
        "tpot": [r.tpot() for r in done if r.output_len > 1],
        "itl": [t for r in done for t in r.itl],
        "e2el": [r.latency for r in done],
    }
    for name in LATENCY_METRICS:
        out.update(_stats(name, series[name], percentiles))
    return out


def sglang_metrics(records: Sequence[RequestRecord], duration: float) -> dict[str, float | int | None]:
    """SGLang `bench_serving` result keys for the same run (its names, its concurrency)."""
    done = [r for r in records if r.success]
    total_in = sum(r.prompt_len for r in done)
    total_out = sum(r.output_len for r in done)
    e2e = [r.latency for r in done]
    itls = [t for r in done for t in r.itl]
    out: dict[str, float | int | None] = {
        "duration": duration,
        "completed": len(done),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "total_output_tokens_retokenized": None,  # perfloop does not retokenize
        "request_throughput": _per_s(len(done), duration),
        "input_throughput": _per_s(total_in, duration),
        "output_throughput": _per_s(total_out, duration),
        "total_throughput": _per_s(total_in + total_out, duration),
    }
    for key, values, pcts in (
        ("e2e_latency", e2e, (99,)),
        ("ttft", [r.ttft for r in done], (99,)),
        ("tpot", [r.tpot() for r in done if r.output_len > 1], (99,)),
        ("itl", itls, (95, 99)),
    ):
        out.update(_stats(key, values, pcts))
    out["max_itl_ms"] = float(max(itls) * 1000.0) if itls else 0.0
    out["concurrency"] = _per_s(sum(e2e), duration)
    out["accept_length"] = None  # no speculative decoding measured
    return out
