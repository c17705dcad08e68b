"""Per-client metrics of the ABCCBA runs and their ratios to perfloop bench: `python summarize.py`."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

HERE = Path(__file__).parent
KEYS = ("request_throughput", "output_throughput", "median_ttft_ms", "median_tpot_ms", "median_itl_ms",
        "mean_itl_ms", "max_output_tokens_per_s", "total_input_tokens", "total_output_tokens")  # fmt: skip


def load(path: Path) -> dict[str, float]:
    text = path.read_text()
    data = json.loads(text.splitlines()[0]) if path.suffix == ".jsonl" else json.loads(text)
    return {k: float(data[k]) for k in KEYS}


runs = {
    "perfloop bench": [load(HERE / f"A-{i}.json") for i in (1, 2)],
    "vllm bench serve": [load(HERE / f"B-{i}.json") for i in (1, 2)],
    "sglang.bench_serving": [load(HERE / f"C-{i}.jsonl") for i in (1, 2)],
}
means = {c: {k: statistics.mean(r[k] for r in rs) for k in KEYS} for c, rs in runs.items()}
base = means["perfloop bench"]
print("| client | " + " | ".join(KEYS) + " |")
print("|---" * (len(KEYS) + 1) + "|")
for client, rs in runs.items():
    for i, r in enumerate(rs, 1):
        print(f"| {client} run {i} | " + " | ".join(f"{r[k]:.2f}" for k in KEYS) + " |")
for client, m in means.items():
    if client != "perfloop bench":
        print(f"| {client} / perfloop (means) | " + " | ".join(f"{m[k] / base[k]:.3f}" for k in KEYS) + " |")

# Formula check: vLLM's own per-request timings through perfloop's metric code.
from perfloop.bench.metrics import RequestRecord, compute_metrics  # noqa: E402

print("\n| vLLM run | metric | vLLM's number | perfloop's formulas on vLLM's timings |\n|---|---|---|---|")
for i in (1, 2):
    d = json.loads((HERE / f"B-{i}.json").read_text())
    t0 = min(d["start_times"])
    records = [
        RequestRecord(index=k, success=True, prompt_len=il, requested_output_len=64, output_len=ol,
                      start=st - t0, ttft=tt, itl=itl, latency=lat)
        for k, (il, ol, st, tt, itl, lat) in enumerate(zip(d["input_lens"], d["output_lens"], d["start_times"],
                                                            d["ttfts"], d["itls"], d["latencies"], strict=True))
    ]  # fmt: skip
    ours = compute_metrics(records, d["duration"])
    for key in ("output_throughput", "median_ttft_ms", "median_tpot_ms", "median_itl_ms", "max_output_tokens_per_s"):
        print(f"| {i} | {key} | {d[key]:.4f} | {ours[key]:.4f} |")
