"""Interleaved rounds: perfloop's engine vs llama.cpp (F32, Q4_1) and `transformers serve` on SmolLM2-135M.

Run from the repo root:  python artifacts/runs/2026-12-02-cpu-smollm2-peers/run_peers.py ROUNDS
Each round runs every (side, concurrency) once, in an order shuffled by the round's seed; every
server is launched fresh with 1 thread. Results land in results/ and summary.json.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from perfloop.bench.chat_prompts import write_chat_dataset
from perfloop.bench.runner import BenchSpec, run_benchmark
from perfloop.bench.workloads import WorkloadSpec

HERE = Path(__file__).parent
MODEL = "preset:smollm2-135m"
SIDES = {
    "perfloop-fp32": f"OMP_NUM_THREADS=1 perfloop serve --model {MODEL} --port {{port}}",
    "llamacpp-f32": f"peer:llamacpp --model {MODEL} --weights f32 --threads 1",
    "llamacpp-f16": f"peer:llamacpp --model {MODEL} --weights f16 --threads 1",
    "llamacpp-q4_1": f"peer:llamacpp --model {MODEL} --weights q4_1 --threads 1",
    "transformers-serve-fp32": f"peer:transformers-serve --model {MODEL} --threads 1",
}
CONCURRENCY = {1: 3, 16: 16}  # concurrency -> prompts


def main(rounds: int) -> None:
    dataset = write_chat_dataset(MODEL, HERE / "chat-prompts.json", num_prompts=16, min_tokens=128, max_tokens=512)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    for r in range(rounds):
        jobs = [(side, c) for side in SIDES for c in CONCURRENCY]
        random.Random(r).shuffle(jobs)
        for side, c in jobs:
            path = out / f"round{r}-{side}-c{c}.json"
            if path.is_file():
                continue
            workload = WorkloadSpec(kind="sharegpt", dataset_path=str(dataset), num_prompts=CONCURRENCY[c],
                                    output_len=128, seed=0)  # fmt: skip
            spec = BenchSpec(launch=SIDES[side], workload=workload, max_concurrency=c, label=side,
                             output=str(path), progress=False)  # fmt: skip
            res = run_benchmark(spec)
            print(json.dumps({"round": r, "side": side, "c": c, "tok_s": res.output_throughput,
                              "ttft": res.median_ttft_ms, "tpot": res.median_tpot_ms}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
