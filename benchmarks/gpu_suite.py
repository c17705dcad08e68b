"""One GPU call: engine correctness on CUDA, then the standard-workload and batch-1 benchmarks.

    python -m benchmarks.gpu_suite --out DIR [--parts correctness,standard,hf,llama8b,profile]

Other parts: gemv (tile sweep; later parts use its tiles), llama8b-unfused, llama8b-nopdl, steps,
profile8b, fixtures.

Prints a short table last and writes `suite.json` (+ bench JSON, profile tables) into DIR.
Each figure in artifacts/runs/*-h200-standard/ comes from this command.
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import typer
from rich.console import Console
from rich.table import Table

from perfloop.bench.runner import BenchSpec, run_benchmark
from perfloop.bench.workloads import WorkloadSpec, build_requests
from perfloop.engine.llm import LLM
from perfloop.engine.sampling_params import SamplingParams

app = typer.Typer(add_completion=False)
STANDARD_FLAGS = "--max-num-seqs 256 --max-num-batched-tokens 16384 --block-size 256"


def _prompts(n: int, lo: int, hi: int, seed: int, vocab: int = 512) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(lo, hi, (n,), generator=g).tolist()
    return [torch.randint(0, vocab, (k,), generator=g).tolist() for k in lens]


def _tokens(llm: LLM, prompts: list[list[int]], max_tokens: list[int]) -> list[list[int]]:
    params = [SamplingParams(max_tokens=m, temperature=0, ignore_eos=True) for m in max_tokens]
    return [o.output_token_ids for o in llm.generate(prompts, params)]


def correctness() -> dict[str, Any]:
    """fp32 greedy tokens: triton + CUDA graphs == torch eager == HF, under every scheduler feature."""
    shared = _prompts(1, 200, 201, seed=5)[0]
    prompts = [shared + p for p in _prompts(20, 1, 60, seed=6)] + _prompts(28, 1, 300, seed=7)
    max_tokens = [8 + (i * 7) % 57 for i in range(len(prompts))]  # staggered ends walk every graph bucket
    base = dict(
        model="preset:tiny-qwen3", dtype="float32", device="cuda", max_num_seqs=48, num_kv_blocks=4000
    )
    ref = _tokens(
        LLM(**base, attention_backend="torch", enforce_eager=True, enable_prefix_caching=False),
        prompts,
        max_tokens,
    )
    variants = {
        "triton+graphs": dict(),
        "triton+graphs prefix-cache": dict(enable_prefix_caching=True),
        "triton chunked budget 64": dict(max_num_batched_tokens=64),
        "triton small pool (preemption)": dict(num_kv_blocks=40, block_size=16),
    }
    results: dict[str, Any] = {}
    for name, extra in variants.items():
        llm = LLM(**{**base, "attention_backend": "triton", **extra})
        got = _tokens(llm, prompts, max_tokens)
        st = llm.engine.stats()
        results[name] = {
            "identical": got == ref,
            "mismatched": sum(a != b for a, b in zip(got, ref, strict=True)),
            "prefix_hits": st.prefix_cache_hits,
            "chunks": st.num_prefill_chunks,
            "preemptions": st.num_preemptions,
        }
    results["hf_fp32_identical"] = _hf_matches(prompts[:8], ref[:8], max_tokens[:8])
    results["bf16_qwen3_0.6b"] = _bf16_logits()
    results["bf16_one_token_pdl_vs_no_pdl"] = _one_token_path()
    return results


def _one_token_path() -> dict[str, Any]:
    """Batch-1 bf16 greedy decode (the fused GEMV path) with and without programmatic dependent
    launch, in CUDA graphs and eagerly: PDL must not change a bit (same kernels; a race would)."""
    prompts = _prompts(3, 20, 200, seed=11, vocab=10000)
    runs = {}
    for eager in (False, True):
        for pdl in ("1", "0"):
            with mock.patch.dict(os.environ, {"PERFLOOP_PDL": pdl}):
                llm = LLM("preset:qwen3-0.6b", enforce_eager=eager, max_num_seqs=1, num_kv_blocks=64)
                runs[(eager, pdl)] = _tokens(llm, prompts, [200, 200, 200])
                del llm
    return {
        "graphs_identical": runs[(False, "1")] == runs[(False, "0")],
        "eager_identical": runs[(True, "1")] == runs[(True, "0")],
        "tokens_per_run": sum(map(len, runs[(True, "0")])),
    }


def _hf_matches(prompts: list[list[int]], ref: list[list[int]], max_tokens: list[int]) -> bool:
    import transformers

    from perfloop.engine.models.presets import resolve_model

    hf = transformers.AutoModelForCausalLM.from_pretrained(
        resolve_model("preset:tiny-qwen3"), dtype=torch.float32
    )
    hf = hf.cuda().eval()
    ok = True
    for p, r, m in zip(prompts, ref, max_tokens, strict=True):
        out = hf.generate(
            torch.tensor([p], device="cuda"),
            max_new_tokens=m,
            min_new_tokens=m,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
        ok &= out[0, len(p) :].tolist() == r
    return ok


def _bf16_logits() -> dict[str, float]:
    from perfloop.engine.scheduler import ScheduledBatch
    from perfloop.engine.sequence import Sequence

    prompts = _prompts(16, 50, 600, seed=9, vocab=10000)
    logits = {}
    for backend in ("torch", "triton"):
        llm = LLM("preset:qwen3-0.6b", attention_backend=backend, enforce_eager=True, num_kv_blocks=512)
        eng = llm.engine
        seqs = [Sequence(f"l{i}", p, SamplingParams()) for i, p in enumerate(prompts)]
        for s in seqs:
            eng.blocks.allocate(s, s.num_tokens)
        logits[backend] = eng.runner.logits_for(ScheduledBatch(seqs, [s.num_tokens for s in seqs]))
        del llm, eng
        torch.cuda.empty_cache()
    diff = (logits["torch"] - logits["triton"]).abs()
    agree = (logits["torch"].argmax(-1) == logits["triton"].argmax(-1)).float().mean().item()
    return {
        "max_abs_diff": diff.max().item(),
        "mean_abs_diff": diff.mean().item(),
        "logit_scale": logits["torch"].abs().mean().item(),
        "argmax_agreement": agree,
    }


def standard(out: Path) -> dict[str, Any]:
    """The standard workload (nano-vllm's) through the in-process engine backend."""
    spec = BenchSpec(
        launch=f"engine:--model preset:qwen3-0.6b {STANDARD_FLAGS}",
        workload=WorkloadSpec(kind="standard"),
        num_warmups=2,
        output=str(out / "standard.json"),
        progress=False,
    )
    result = run_benchmark(spec)
    return {
        "output_throughput": result.output_throughput,
        "duration": result.duration,
        "total_output_tokens": result.total_output_tokens,
        "total_input_tokens": result.total_input_tokens,
        "completed": result.completed,
    }


def hf_slice(n: int) -> dict[str, Any]:
    """HF transformers continuous batching (`paged|sdpa`) on the first n requests of the standard workload."""
    from perfloop.bench.backends.hf import HFBackend

    reqs = build_requests(WorkloadSpec(kind="standard"))[:n]
    backend = HFBackend("preset:qwen3-0.6b", mode="generate_batch")
    records: list[Any] = []
    backend.run(reqs[:1], [0.0], None, records.append, time.perf_counter())  # warm-up
    records.clear()
    t0 = time.perf_counter()
    backend.run(reqs, [0.0] * n, None, records.append, t0)
    dur = time.perf_counter() - t0
    tokens = sum(r.output_len for r in records if r.success)
    return {"requests": n, "output_tokens": tokens, "duration": dur, "output_throughput": tokens / dur}


def gemv_sweep(out: Path) -> dict[str, Any]:
    """Tile sweep of the one-token GEMVs; later parts of this run use the best tiles found."""
    from benchmarks import gemv_bench

    results = gemv_bench.sweep()
    (out / "gemv_sweep.json").write_text(json.dumps(results, indent=2))
    gemv_bench.apply(results)
    Console(width=200).print(gemv_bench.table(results))
    return {name: (round(r["fused_us"], 2), round(r["unfused_us"], 2)) for name, r in results.items()}


def llama8b_unfused() -> dict[str, Any]:
    """`llama8b` with the one-token GEMV path off (cuBLAS + separate norm/SiLU kernels): the A/B."""
    with mock.patch.dict(os.environ, {"PERFLOOP_GEMV": "0"}):
        return llama8b()


def llama8b_nopdl() -> dict[str, Any]:
    """`llama8b` with the GEMVs launched without programmatic dependent launch: the PDL A/B."""
    with mock.patch.dict(os.environ, {"PERFLOOP_PDL": "0"}):
        return llama8b()


def llama8b() -> dict[str, Any]:
    """Batch-1 decode speed of the Llama-3.1-8B shape: 128 prompt + 512 output tokens."""
    llm = LLM("preset:llama-3.1-8b", max_num_seqs=8, max_model_len=4096, block_size=256)
    prompt = _prompts(1, 128, 129, seed=3, vocab=128000)
    _tokens(llm, prompt, [64])  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = _tokens(llm, prompt, [512])
    torch.cuda.synchronize()
    dur = time.perf_counter() - t0
    weight_bytes = sum(p.numel() * p.element_size() for p in llm.engine.runner.model.parameters())
    runner = llm.engine.runner
    graph_ms = _device_ms(runner.graphs.graphs[1].replay) if runner.graphs else None
    hidden = torch.zeros(1, runner.model_cfg.hidden_size, dtype=runner.dtype, device="cuda")
    logits_ms = _device_ms(lambda: runner.model.compute_logits(hidden).argmax(-1))
    return {
        "graph_replay_ms": graph_ms,
        "logits_argmax_ms": logits_ms,
        "output_tokens": len(out[0]),
        "duration": dur,
        "output_throughput": len(out[0]) / dur,
        "weight_bytes": weight_bytes,
    }


def step_times() -> dict[str, Any]:
    """Wall time of every engine step of the standard workload, split by stage: where the time goes."""
    from perfloop.engine.config import EngineConfig
    from perfloop.engine.llm_engine import LLMEngine

    engine = LLMEngine(
        EngineConfig(
            model="preset:qwen3-0.6b", max_num_seqs=256, max_num_batched_tokens=16384, block_size=256
        )
    )
    reqs = build_requests(WorkloadSpec(kind="standard"))
    for r in reqs:
        engine.add_request(
            str(r.index), r.prompt, SamplingParams(max_tokens=r.output_len, temperature=0, ignore_eos=True)
        )
    rows = []
    cache = Path(os.environ.get("TRITON_CACHE_DIR", Path.home() / ".triton" / "cache"))
    compiled_before = len(list(cache.glob("*"))) if cache.is_dir() else 0
    torch.cuda.synchronize()
    start = time.perf_counter()
    while engine.has_unfinished():
        t0 = time.perf_counter()
        batch_size = len(engine.scheduler.running) + len(engine.scheduler.waiting)
        out = engine.step()
        rows.append((time.perf_counter() - t0, batch_size, len(out)))
    total = time.perf_counter() - start
    compiled_during = (len(list(cache.glob("*"))) if cache.is_dir() else 0) - compiled_before
    slow = sorted(rows, reverse=True)[:8]
    return {
        "total_s": total,
        "triton_compiles_during_run": compiled_during,
        "steps": len(rows),
        "tokens": sum(r[2] for r in rows),
        "sum_step_s": sum(r[0] for r in rows),
        "slowest": [(round(t * 1e3, 1), b, n) for t, b, n in slow],
        "median_ms_by_bs": {
            b: round(
                1e3
                * sorted(t for t, bb, _ in rows if bb == b)[len([1 for _, bb, _ in rows if bb == b]) // 2],
                2,
            )
            for b in (256, 192, 128, 64, 32, 8, 1)
            if any(bb == b for _, bb, _ in rows)
        },
    }


def profile(out: Path) -> dict[str, Any]:
    """Trace decode steps 60-63 of the standard workload (all 256 requests decoding) and tabulate them."""
    from perfloop.engine.config import EngineConfig
    from perfloop.profilers.capture import ProfileSchedule, capture_engine
    from perfloop.profilers.tables import analyze

    flags = dict(max_num_seqs=256, max_num_batched_tokens=16384, block_size=256)
    cfg = EngineConfig(model="preset:qwen3-0.6b", **flags)
    trace = capture_engine(
        cfg, WorkloadSpec(kind="standard"), out / "profile", ProfileSchedule(wait=60, warmup=2, active=4)
    )
    tables = analyze(
        trace,
        out / "profile" / "tables",
        formats=("md", "json"),
        mapping_path=out / "profile" / "mapping" / "trace.json.gz",
    )
    return {"trace": str(trace), "stages": sorted(tables)}


def _device_ms(fn: Any, iters: int = 200) -> float:
    """Mean device time of fn in ms over back-to-back launches, timed with CUDA events."""
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def profile_8b(out: Path) -> dict[str, Any]:
    """Trace batch-1 decode steps of the Llama-3.1-8B shape and tabulate them."""
    from perfloop.engine.config import EngineConfig
    from perfloop.profilers.capture import ProfileSchedule, capture_engine
    from perfloop.profilers.tables import analyze

    cfg = EngineConfig(model="preset:llama-3.1-8b", max_num_seqs=8, max_model_len=4096, block_size=256)
    work = [
        (
            _prompts(1, 128, 129, seed=3, vocab=128000)[0],
            SamplingParams(max_tokens=64, temperature=0, ignore_eos=True),
        )
    ]
    trace = capture_engine(cfg, work, out / "profile8b", ProfileSchedule(wait=20, warmup=2, active=4))
    tables = analyze(
        trace,
        out / "profile8b" / "tables",
        formats=("md", "json"),
        mapping_path=out / "profile8b" / "mapping" / "trace.json.gz",
    )
    return {"trace": str(trace), "stages": sorted(tables)}


def trace_fixtures(out: Path) -> dict[str, Any]:
    """Small real traces for the profiler tests: eager, and CUDA graphs with their eager mapping trace."""
    import shutil

    from perfloop.engine.config import EngineConfig
    from perfloop.profilers.capture import ProfileSchedule, capture_engine

    work = [
        (p, SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))
        for p in _prompts(8, 40, 90, 4, 10000)
    ]
    sched = ProfileSchedule(wait=0, warmup=1, active=3)
    written = {}
    for name, eager in (("eager", True), ("graphs", False)):
        cfg = EngineConfig(
            model="preset:qwen3-0.6b", enforce_eager=eager, max_num_seqs=16, num_kv_blocks=64, block_size=256
        )
        trace = capture_engine(cfg, work, out / name, sched)
        shutil.copy(trace, out / f"h200_{name}.json.gz")
        written[name] = trace.stat().st_size
        if not eager:
            shutil.copy(out / name / "mapping" / "trace.json.gz", out / "h200_graphs_mapping.json.gz")
    return written


@app.command()
def main(
    out: Path = typer.Option(..., "--out", help="Folder for suite.json and the bench/profile files."),
    parts: str = typer.Option("correctness,standard,hf,llama8b,profile", "--parts"),
    hf_requests: int = typer.Option(32, "--hf-requests", help="Standard-workload slice for the HF peer."),
    blas: str = typer.Option("default", "--blas", help="default, cublas or cublaslt."),
) -> None:
    """Run the selected parts and print a summary table."""
    if blas != "default":
        torch.backends.cuda.preferred_blas_library(blas)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    for part in parts.split(","):
        t0 = time.perf_counter()
        try:
            value = {
                "correctness": correctness,
                "hf": lambda: hf_slice(hf_requests),
                "llama8b": llama8b,
                "llama8b-unfused": llama8b_unfused,
                "llama8b-nopdl": llama8b_nopdl,
                "gemv": lambda: gemv_sweep(out),
                "standard": lambda: standard(out),
                "steps": step_times,
                "fixtures": lambda: trace_fixtures(out),
                "profile8b": lambda: profile_8b(out),
                "profile": lambda: profile(out),
            }[part]()
        except Exception as exc:  # one failing part must not lose the others' numbers
            value = {"error": f"{type(exc).__name__}: {exc}"}
        value["wall_s"] = round(time.perf_counter() - t0, 1)
        results[part] = value
        (out / "suite.json").write_text(json.dumps(results, indent=2, default=str))
        gc.collect()
        torch.cuda.empty_cache()
    table = Table("part", "result")
    for part in parts.split(","):
        table.add_row(part, json.dumps(results[part], default=str)[:400])
    Console(width=200).print(table)


if __name__ == "__main__":
    app()
