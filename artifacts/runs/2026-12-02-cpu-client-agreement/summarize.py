"""Per-client metrics of the ABCCBA runs, their ratios to perfloop bench, and the server's own view.

Run from the repository root (an argument: read that folder instead, e.g. no-warmup/):
    python artifacts/runs/2026-12-02-cpu-client-agreement/summarize.py > artifacts/runs/2026-12-02-cpu-client-agreement/summary.md

1. Every run: the client's summary metrics, and what the server itself counted during that run
   (/metrics scraped before and after: requests, generated tokens, mean TTFT and mean ITL; these
   include the client's warm-up request, if it sent one).
2. Client / perfloop bench ratios: of the means over runs, with the [min, max] of the ratios of runs
   paired by position (A-i with B-i and C-i: neighbours in the ABCCBA order).
3. Each client / the server, per run (mean ITL, mean TTFT): what a client adds to the server's own
   timing, free of the run-to-run speed of the server.
4. Formulas: each peer client's own per-request timings through perfloop's metric code.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from perfloop.bench.metrics import RequestRecord, compute_metrics
from perfloop.engine.server.metrics import parse

HERE = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent  # or another run's OUT folder
KEYS = ("request_throughput", "output_throughput", "median_ttft_ms", "median_tpot_ms", "median_itl_ms",
        "mean_ttft_ms", "mean_itl_ms", "max_output_tokens_per_s", "total_input_tokens", "total_output_tokens")  # fmt: skip
RATIO_KEYS = KEYS[:8]
CLIENTS = {"A": "perfloop bench", "B": "vllm bench serve", "C": "sglang.bench_serving"}
TTFT, ITL = "perfloop:time_to_first_token_seconds", "perfloop:inter_token_latency_seconds"


def load(path: Path) -> dict:
    """A client's result file (SGLang's .jsonl holds one JSON line)."""
    text = path.read_text()
    return json.loads(text.splitlines()[0]) if path.suffix == ".jsonl" else json.loads(text)


def server(tag: str) -> dict[str, float]:
    """What the server counted during run `tag`: requests, tokens, mean TTFT and ITL (ms)."""
    before = parse((HERE / f"{tag}.before.metrics.txt").read_text())
    after = parse((HERE / f"{tag}.after.metrics.txt").read_text())

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    return {
        "requests": delta("perfloop:request_success_total"),
        "tokens": delta("perfloop:generation_tokens_total"),
        "preemptions": delta("perfloop:num_preemptions_total"),
        "ttft_ms": delta(f"{TTFT}_sum") / delta(f"{TTFT}_count") * 1e3,
        "itl_ms": delta(f"{ITL}_sum") / delta(f"{ITL}_count") * 1e3,
    }


def peer_records(data: dict) -> list[RequestRecord]:
    """A peer client's per-request timings as perfloop's records (vLLM and SGLang share the field names)."""
    t0 = min(data["start_times"]) if "start_times" in data else 0.0
    starts = data.get("start_times") or [t0] * len(data["ttfts"])
    latencies = data.get("latencies") or [
        t + sum(i) for t, i in zip(data["ttfts"], data["itls"], strict=True)
    ]
    return [
        RequestRecord(index=k, success=True, prompt_len=il, requested_output_len=ol, output_len=ol,
                      start=st - t0, ttft=tt, itl=itl, latency=lat)
        for k, (il, ol, st, tt, itl, lat) in enumerate(zip(data["input_lens"], data["output_lens"], starts,
                                                            data["ttfts"], data["itls"], latencies, strict=True))
    ]  # fmt: skip


def main() -> None:
    paths = {c: sorted(HERE.glob(f"{c}-[0-9].json*"), key=lambda p: p.name) for c in CLIENTS}
    data = {c: [load(p) for p in ps] for c, ps in paths.items()}
    servers = {c: [server(p.name.split(".")[0]) for p in ps] for c, ps in paths.items()}

    print("## Every run\n")
    print(
        "| run | "
        + " | ".join(KEYS)
        + " | server: requests | tokens | preemptions | mean TTFT ms | mean ITL ms |"
    )
    print("|---" * (len(KEYS) + 6) + "|")
    for c, ps in paths.items():
        for p, r, s in zip(ps, data[c], servers[c], strict=True):
            cells = " | ".join(f"{float(r[k]):.2f}" for k in KEYS)
            srv = f"{s['requests']:.0f} | {s['tokens']:.0f} | {s['preemptions']:.0f} | {s['ttft_ms']:.1f} | {s['itl_ms']:.2f}"
            print(f"| {CLIENTS[c]} {p.name.split('.')[0]} | {cells} | {srv} |")

    print("\n## Ratios to perfloop bench (mean of runs, [min, max] of runs paired by position)\n")
    print("| client | " + " | ".join(RATIO_KEYS) + " |")
    print("|---" * (len(RATIO_KEYS) + 1) + "|")
    for c in ("B", "C"):
        cells = []
        for k in RATIO_KEYS:
            mean = statistics.mean(r[k] for r in data[c]) / statistics.mean(r[k] for r in data["A"])
            paired = [r[k] / b[k] for r, b in zip(data[c], data["A"], strict=True)]
            cells.append(f"{mean:.3f} [{min(paired):.3f}, {max(paired):.3f}]")
        print(f"| {CLIENTS[c]} / perfloop bench | " + " | ".join(cells) + " |")

    print("\n## Each client / the server's own timing, same run (mean over the run's requests)\n")
    print("| client | mean ITL: client / server, per run | mean TTFT: client / server, per run |")
    print("|---|---|---|")
    for c in CLIENTS:
        itl = [r["mean_itl_ms"] / s["itl_ms"] for r, s in zip(data[c], servers[c], strict=True)]
        ttft = [r["mean_ttft_ms"] / s["ttft_ms"] for r, s in zip(data[c], servers[c], strict=True)]
        print(
            f"| {CLIENTS[c]} | {', '.join(f'{x:.4f}' for x in itl)} | {', '.join(f'{x:.4f}' for x in ttft)} |"
        )

    print("\n## Formulas: each peer client's per-request timings through perfloop's metric code\n")
    print("| run | metric | the client's number | perfloop's formulas on the client's timings |")
    print("|---|---|---|---|")
    for c in ("B", "C"):
        for p, d in zip(paths[c], data[c], strict=True):
            ours = compute_metrics(peer_records(d), d["duration"])
            for key in (
                "output_throughput",
                "median_ttft_ms",
                "median_tpot_ms",
                "median_itl_ms",
                "mean_itl_ms",
            ):
                print(f"| {p.name.split('.')[0]} | {key} | {d[key]:.4f} | {ours[key]:.4f} |")


if __name__ == "__main__":
    main()
