"""Host side of the standard workload with the device stubbed out: per-step host time, GC pauses.

The real scheduler, block manager, step-input builder and pack, engine bookkeeping (`_advance`,
`_resolve`) and the benchmark's in-process backend loop over the 256 standard requests (token ids
taken mod the tiny model's vocabulary); `ModelRunner.launch` is replaced by its host part only
(build and pack the step inputs) and returns the tokens at once.

    python artifacts/runs/2026-12-02-h200-loop-plan/host_sim.py
"""

from __future__ import annotations

import gc
import json
import statistics
import time

from perfloop.bench.backends.engine import EngineBackend
from perfloop.bench.workloads import BenchRequest, WorkloadSpec, build_requests
from perfloop.engine import step_inputs
from perfloop.engine.config import EngineConfig
from perfloop.engine.runner import StepHandle
from perfloop.engine.scheduler import ScheduledBatch


def main() -> None:
    requests = [
        BenchRequest(r.index, [t % 500 for t in r.prompt], r.prompt_len, r.output_len)
        for r in build_requests(WorkloadSpec(kind="standard"))
    ]
    config = EngineConfig(
        model="preset:tiny-qwen3", max_num_seqs=256, max_num_batched_tokens=16384, block_size=256,
        num_kv_blocks=2000, max_model_len=2048,
    )  # fmt: skip
    backend = EngineBackend(config)
    engine = backend.engine

    def host_launch(batch: ScheduledBatch, prev: StepHandle | None) -> StepHandle:
        host = step_inputs.build_step_inputs(batch.seqs, batch.num_new_tokens, config.block_size)
        step_inputs.pack(host)
        sampled = [i for i, (s, n) in enumerate(zip(batch.seqs, batch.num_new_tokens, strict=True))
                   if s.num_computed + n == s.num_tokens]  # fmt: skip
        handle = StepHandle(batch, sampled, tokens_dev=object(), tokens_list=[1] * len(sampled))
        return handle

    engine.runner.launch = host_launch
    pauses: list[tuple[int, float]] = []
    started: dict[str, float] = {}

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started["t"] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started["t"]))

    steps: list[tuple[float, int]] = []
    step = engine.step

    def timed_step() -> list:
        t = time.perf_counter()
        out = step()
        steps.append((time.perf_counter() - t, len(engine.scheduler.running)))
        return out

    engine.step = timed_step
    gc.callbacks.append(on_gc)
    t0 = time.perf_counter()
    done: list = []
    backend.run(requests, [0.0] * len(requests), None, done.append, t0)
    wall = time.perf_counter() - t0
    gc.callbacks.remove(on_gc)
    by_running: dict[int, list[float]] = {}
    for seconds, running in steps:
        by_running.setdefault(min(running // 64 * 64, 192), []).append(seconds * 1e3)
    gcs = {g: [p for gen, p in pauses if gen == g] for g in (0, 1, 2)}
    print(json.dumps({
        "requests": len(done), "steps": len(steps), "host_wall_s": round(wall, 3),
        "median_host_ms_per_step_by_running": {k: round(statistics.median(v), 3) for k, v in sorted(by_running.items())},
        "gc_collections_count_total_ms": {g: [len(p), round(sum(p) * 1e3, 1)] for g, p in gcs.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
