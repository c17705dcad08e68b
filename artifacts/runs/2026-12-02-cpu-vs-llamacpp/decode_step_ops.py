"""One decode step of perfloop's engine at batch 1 on SmolLM2-135M-Instruct (fp32, CPU, 1 thread):
where the time goes, per op, against the weight-read floor.

Run from the repository root (quiet machine):
    python artifacts/runs/2026-12-02-cpu-vs-llamacpp/decode_step_ops.py > decode-step-ops.md

1. The machine's single-thread read bandwidth: the best of 5 reads of a 512 MiB fp32 tensor
   (`x.sum()`), and of the model's own largest GEMV (the tied lm_head, 49,152 x 576).
2. Unprofiled decode steps: one ChatML prompt from examples/smollm2-chat-prompts.json, then 64
   decode steps at batch 1, each `LLMEngine.step()` timed (median).
3. 16 more decode steps under torch.profiler: CPU time per step of every top-level op (inclusive:
   `aten::linear` includes its `aten::addmm`), linears grouped by weight shape with their bytes and
   floor; what no op covers is host time (Python, scheduling, sampling glue, profiler overhead).
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from perfloop.engine.config import EngineConfig
from perfloop.engine.llm_engine import LLMEngine
from perfloop.engine.sampling_params import SamplingParams

MIB = 1 << 20
STEPS, PROFILED = 64, 16


def read_bandwidth(weight: torch.Tensor) -> tuple[float, float]:
    """Bytes/s of a plain 512 MiB read and of a GEMV over `weight` (best of 5 each)."""
    big = torch.ones(128 * MIB, dtype=torch.float32)
    x = torch.ones(weight.shape[1], dtype=weight.dtype)

    def best(fn, nbytes: int) -> float:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return nbytes / min(times)

    stream = best(lambda: big.sum(), big.numel() * 4)
    gemv = best(lambda: torch.mv(weight, x), weight.numel() * weight.element_size())
    return stream, gemv


def top_level_ops(prof) -> list:
    """aten ops under no other aten op: their CPU times cover everything below them exactly once."""

    def outermost(e) -> bool:
        parent = e.cpu_parent
        while parent is not None:
            if parent.name.startswith("aten::"):
                return False
            parent = parent.cpu_parent
        return True

    return [e for e in prof.events() if e.name.startswith("aten::") and outermost(e)]


def main() -> None:
    torch.set_num_threads(1)
    engine = LLMEngine(
        EngineConfig(model="preset:smollm2-135m", dtype="float32", device="cpu", torch_threads=1)
    )
    data = json.loads(Path("examples/smollm2-chat-prompts.json").read_text())
    prompt = data[0]["conversations"][0]["value"]
    params = SamplingParams(max_tokens=STEPS + PROFILED + 8, temperature=0.0, ignore_eos=True)
    ids = engine.add_request("r0", prompt, params)
    for _ in range(3):  # prefill, the first decode steps (warm-up)
        engine.step()
    walls = []
    for _ in range(STEPS):
        t = time.perf_counter()
        engine.step()
        walls.append(time.perf_counter() - t)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t = time.perf_counter()
        for _ in range(PROFILED):
            engine.step()
        profiled_wall = (time.perf_counter() - t) / PROFILED

    weights = {n: p for n, p in engine.runner.model.named_parameters()}
    total_bytes = sum(p.numel() * p.element_size() for p in weights.values())
    lm_head = max(weights.values(), key=lambda p: p.numel())
    stream_bw, gemv_bw = read_bandwidth(lm_head.detach())

    by_op: dict[str, float] = defaultdict(float)
    by_linear: dict[tuple[int, int], list[float]] = defaultdict(list)
    count: dict[str, int] = defaultdict(int)
    for e in top_level_ops(prof):
        us = e.cpu_time_total
        by_op[e.name] += us
        count[e.name] += 1
        if e.name == "aten::linear" and len(e.input_shapes) >= 2 and len(e.input_shapes[1]) == 2:
            by_linear[tuple(e.input_shapes[1])].append(us)
    op_ms = {k: v / 1e3 / PROFILED for k, v in by_op.items()}
    covered = sum(op_ms.values())
    wall_ms = statistics.median(walls) * 1e3
    floor_ms = total_bytes / gemv_bw * 1e3

    print("# One decode step at batch 1: perfloop engine, SmolLM2-135M-Instruct, fp32, 1 thread\n")
    print(
        f"- prompt: {len(ids)} tokens (ChatML, examples/smollm2-chat-prompts.json[0]); torch {torch.__version__}"
    )
    print(f"- unprofiled decode step: median {wall_ms:.2f} ms over {STEPS} steps "
          f"(p10 {sorted(walls)[STEPS // 10] * 1e3:.2f}, p90 {sorted(walls)[STEPS * 9 // 10] * 1e3:.2f})")  # fmt: skip
    print(f"- profiled decode step: {profiled_wall * 1e3:.2f} ms ({PROFILED} steps; profiler overhead "
          f"{(profiled_wall * 1e3 / wall_ms - 1) * 100:.0f}%)")  # fmt: skip
    print(
        f"- weights read per step: {total_bytes / 1e6:.1f} MB (fp32; the tied embedding is read once, as lm_head)"
    )
    print(f"- single-thread read bandwidth: {stream_bw / 1e9:.2f} GB/s (512 MiB sum), "
          f"{gemv_bw / 1e9:.2f} GB/s (lm_head GEMV, {tuple(lm_head.shape)})")  # fmt: skip
    print(f"- **weight-read floor per step: {floor_ms:.2f} ms** at the GEMV bandwidth "
          f"({total_bytes / stream_bw * 1e3:.2f} ms at the plain-read bandwidth); "
          f"the step takes **{wall_ms / floor_ms:.2f}x** the floor\n")  # fmt: skip

    print("## Linears by weight shape (inclusive CPU time per step)\n")
    print("| weight (out x in) | calls/step | ms/step | MB read/step | floor ms/step | achieved GB/s |")
    print("|---|---|---|---|---|---|")
    lin_ms = lin_floor = 0.0
    for shape, times in sorted(by_linear.items(), key=lambda kv: -sum(kv[1])):
        ms = sum(times) / 1e3 / PROFILED
        mb = shape[0] * shape[1] * 4 * len(times) / PROFILED / 1e6
        floor = mb * 1e6 / gemv_bw * 1e3
        lin_ms, lin_floor = lin_ms + ms, lin_floor + floor
        print(f"| {shape[0]} x {shape[1]} | {len(times) / PROFILED:.0f} | {ms:.2f} | {mb:.1f} | {floor:.2f} | "
              f"{mb / ms:.2f} |")  # fmt: skip
    print(f"| **all linears** |  | **{lin_ms:.2f}** |  | **{lin_floor:.2f}** |  |\n")

    print("## Every top-level op (inclusive CPU time per step, profiled)\n")
    print("| op | calls/step | ms/step | share of profiled step (%) |")
    print("|---|---|---|---|")
    for name, ms in sorted(op_ms.items(), key=lambda kv: -kv[1])[:20]:
        print(
            f"| {name} | {count[name] / PROFILED:.0f} | {ms:.2f} | {ms / (profiled_wall * 1e3) * 100:.1f} |"
        )
    host = profiled_wall * 1e3 - covered
    print(f"| (outside any aten op: Python, scheduler, sampler glue, profiler) |  | {host:.2f} | "
          f"{host / (profiled_wall * 1e3) * 100:.1f} |")  # fmt: skip
    ops = sum(count.values()) / PROFILED
    print(f"\n{ops:.0f} top-level aten ops per decode step; the non-linear ops take "
          f"{covered - lin_ms:.2f} ms/step (profiled), {(covered - lin_ms) / ops * 1e3:.1f} us per op on average.")  # fmt: skip


if __name__ == "__main__":
    main()
