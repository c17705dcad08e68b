"""Paged-decode kernel microbenchmark: achieved HBM bandwidth as a share of a measured copy bandwidth.

Default shape is the issue's: batch 256, 1,024-token contexts, qwen3-0.6b heads (16 q, 8 kv, head_dim
128), bf16, scattered pages. The copy bandwidth is a device-to-device `Tensor.copy_` of a large
buffer (read + write bytes over CUDA-event time). Run:

    python -m benchmarks.kernel_bench --out kernel_bench.json [--sweep]
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import track
from rich.table import Table

SCHEMA_VERSION = 1
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class DecodeShape(BaseModel):
    """What one paged-decode call attends over."""

    batch: int = 256
    context: int = 1024
    num_heads: int = 16
    num_kv_heads: int = 8
    head_dim: int = 128
    dtype: str = "bfloat16"


class DecodeRun(BaseModel):
    """One timed kernel configuration."""

    block_size: int
    block_n: int
    num_warps: int
    num_stages: int
    num_splits: int
    time_us: float
    bytes_moved: int
    bandwidth_gbs: float
    fraction_of_copy: float
    max_abs_err: float


class KernelBenchResult(BaseModel):
    """Everything the microbenchmark measured, written as JSON."""

    schema_version: int = SCHEMA_VERSION
    device: str
    torch_version: str
    triton_version: str
    shape: DecodeShape
    copy_bandwidth_gbs: float
    copy_bytes: int
    runs: list[DecodeRun]
    best: DecodeRun


def decode_bytes(shape: DecodeShape, block_size: int) -> int:
    """HBM bytes one decode call must move: every K and V row once, q in, out back, the block tables."""
    elt = torch.empty((), dtype=DTYPES[shape.dtype]).element_size()
    kv = 2 * shape.batch * shape.context * shape.num_kv_heads * shape.head_dim * elt
    q_out = 2 * shape.batch * shape.num_heads * shape.head_dim * elt
    tables = shape.batch * -(-shape.context // block_size) * 4
    return kv + q_out + tables + shape.batch * 4


def time_cuda(fn, iters: int = 20, repeats: int = 5) -> float:
    """Median seconds per call of `fn` over `repeats` CUDA-event-timed bursts of `iters` calls."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / iters)
    return statistics.median(samples)


def copy_bandwidth(num_bytes: int = 4 << 30) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write), the practical roofline."""
    src = torch.empty(num_bytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    seconds = time_cuda(lambda: dst.copy_(src), iters=10)
    return 2 * num_bytes / seconds


def _paged_inputs(shape: DecodeShape, block_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Full contexts on scattered pages (a random permutation of blocks), as a long-running pool looks."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dtype = DTYPES[shape.dtype]
    per_seq = -(-shape.context // block_size)
    num_blocks = shape.batch * per_seq + 1
    perm = torch.randperm(num_blocks - 1, generator=gen, device="cuda") + 1
    cache_shape = (num_blocks, block_size, shape.num_kv_heads, shape.head_dim)
    return {
        "q": torch.randn(shape.batch, shape.num_heads, shape.head_dim, generator=gen, device="cuda").to(
            dtype
        ),
        "k_cache": torch.randn(cache_shape, generator=gen, device="cuda").to(dtype),
        "v_cache": torch.randn(cache_shape, generator=gen, device="cuda").to(dtype),
        "block_tables": perm.view(shape.batch, per_seq).to(torch.int32),
        "seq_lens": torch.full((shape.batch,), shape.context, dtype=torch.int32, device="cuda"),
    }


def _max_error(inputs: dict[str, torch.Tensor], out: torch.Tensor, block_size: int, scale: float) -> float:
    """Largest deviation from the torch oracle (fp32) over the first few sequences."""
    from perfloop.engine.attention.metadata import AttentionMetadata
    from perfloop.engine.attention.torch_backend import TorchAttention

    n = min(4, out.shape[0])
    lens = inputs["seq_lens"][:n].tolist()
    meta = AttentionMetadata(
        slot_mapping=torch.empty(0, dtype=torch.int64, device="cuda"),
        query_start_loc=torch.arange(n + 1, dtype=torch.int32, device="cuda"),
        seq_lens=inputs["seq_lens"][:n],
        block_tables=inputs["block_tables"][:n],
        query_lens_cpu=[1] * n,
        seq_lens_cpu=lens,
        max_query_len=1,
        max_seq_len=max(lens),
        block_size=block_size,
    )
    empty = out.new_empty(0, inputs["k_cache"].shape[2], out.shape[2], dtype=torch.float32)
    k32, v32 = inputs["k_cache"].float(), inputs["v_cache"].float()
    ref = TorchAttention().forward(inputs["q"][:n].float(), empty, empty, k32, v32, meta, scale)
    return (out[:n].float() - ref).abs().max().item()


def bench_decode(
    shape: DecodeShape,
    inputs: dict[str, torch.Tensor],
    block_size: int,
    config,
    copy_bw: float,
    num_splits: int,
) -> DecodeRun:
    """Time one decode configuration and express it against the copy bandwidth."""
    from perfloop.engine.kernels import paged_attention as tk

    scale = shape.head_dim**-0.5
    out = torch.empty_like(inputs["q"])

    def call() -> torch.Tensor:
        return tk.paged_decode(
            inputs["q"], inputs["k_cache"], inputs["v_cache"], inputs["block_tables"], inputs["seq_lens"],
            scale, num_splits, out=out, config=config,
        )  # fmt: skip

    seconds = time_cuda(call)
    moved = decode_bytes(shape, block_size)
    err = _max_error(inputs, call(), block_size, scale)
    return DecodeRun(
        block_size=block_size,
        block_n=config.block_n,
        num_warps=config.num_warps,
        num_stages=config.num_stages,
        num_splits=num_splits,
        time_us=seconds * 1e6,
        bytes_moved=moved,
        bandwidth_gbs=moved / seconds / 1e9,
        fraction_of_copy=moved / seconds / copy_bw,
        max_abs_err=err,
    )


def run_kernel_bench(shape: DecodeShape, block_sizes: list[int], sweep: bool) -> KernelBenchResult:
    """Measure the copy roofline, then the decode kernel for each block size (and tile configs if `sweep`)."""
    import triton

    from perfloop.engine.kernels import paged_attention as tk

    if not torch.cuda.is_available():
        raise RuntimeError("the kernel benchmark needs a CUDA device")
    copy_bytes = 4 << 30
    copy_bw = copy_bandwidth(copy_bytes)
    dtype = DTYPES[shape.dtype]
    default = tk.decode_config(shape.head_dim, dtype)
    configs = [default]
    if sweep:
        configs += [
            tk.DecodeConfig(block_n=n, num_warps=w, num_stages=s)
            for n in (32, 64, 128)
            for w in (4, 8)
            for s in (2, 3, 4)
            if (n, w, s) != (default.block_n, default.num_warps, default.num_stages)
        ]
    splits = tk.choose_num_splits(
        shape.batch, shape.num_kv_heads, shape.context, tk.num_sms(torch.device("cuda"))
    )
    runs = []
    for bs in track(block_sizes, description="decode kernel"):
        inputs = _paged_inputs(shape, bs)
        runs += [bench_decode(shape, inputs, bs, cfg, copy_bw, splits) for cfg in configs]
        del inputs
    return KernelBenchResult(
        device=torch.cuda.get_device_name(),
        torch_version=torch.__version__,
        triton_version=triton.__version__,
        shape=shape,
        copy_bandwidth_gbs=copy_bw / 1e9,
        copy_bytes=copy_bytes,
        runs=runs,
        best=max(runs, key=lambda r: r.bandwidth_gbs),
    )


def render_table(result: KernelBenchResult) -> Table:
    """Short table: one row per configuration, the copy roofline in the title."""
    s = result.shape
    table = Table(
        title=f"paged decode, batch {s.batch} x {s.context} ctx, {s.num_heads}q/{s.num_kv_heads}kv "
        f"x {s.head_dim}, {s.dtype}; copy {result.copy_bandwidth_gbs:,.0f} GB/s on {result.device}"
    )
    for col in ("block", "BLOCK_N", "warps", "stages", "splits", "time us", "GB/s", "of copy", "max err"):
        table.add_column(col, justify="right")
    for r in sorted(result.runs, key=lambda r: -r.bandwidth_gbs)[:12]:
        table.add_row(
            *(str(x) for x in (r.block_size, r.block_n, r.num_warps, r.num_stages, r.num_splits)),
            f"{r.time_us:,.1f}",
            f"{r.bandwidth_gbs:,.0f}",
            f"{r.fraction_of_copy:.1%}",
            f"{r.max_abs_err:.2e}",
        )
    return table


app = typer.Typer(add_completion=False)


@app.command()
def main(
    batch: int = typer.Option(256, min=1, help="Sequences per decode step."),
    context: int = typer.Option(1024, min=1, help="Tokens of context per sequence."),
    num_heads: int = typer.Option(16, min=1, help="Query heads."),
    num_kv_heads: int = typer.Option(8, min=1, help="KV heads (num_heads must be a multiple)."),
    head_dim: int = typer.Option(128, help="Head size: a power of two in 16..256."),
    dtype: str = typer.Option("bfloat16", help="bfloat16, float16 or float32."),
    block_size: list[int] = typer.Option([16, 64, 128, 256], help="KV block sizes to time (repeatable)."),
    sweep: bool = typer.Option(False, help="Also time BLOCK_N x num_warps x num_stages variants."),
    out: Path = typer.Option(Path("kernel_bench.json"), help="Where to write the JSON result."),
) -> None:
    """Time the Triton paged-decode kernel against the device's copy bandwidth."""
    if dtype not in DTYPES:
        raise typer.BadParameter(f"dtype must be one of {sorted(DTYPES)}", param_hint="--dtype")
    if num_heads % num_kv_heads:
        raise typer.BadParameter("num_heads must be a multiple of num_kv_heads", param_hint="--num-heads")
    for bs in block_size:
        if bs < 1 or bs & (bs - 1):
            raise typer.BadParameter(
                f"block sizes must be powers of two, got {bs}", param_hint="--block-size"
            )
    if not torch.cuda.is_available():
        typer.echo("error: the kernel benchmark needs a CUDA device", err=True)
        raise typer.Exit(2)
    shape = DecodeShape(
        batch=batch,
        context=context,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        dtype=dtype,
    )
    result = run_kernel_bench(shape, block_size, sweep)
    Console().print(render_table(result))
    out.write_text(json.dumps(result.model_dump(), indent=2))
    best = result.best
    typer.echo(
        f"best: {best.bandwidth_gbs:,.0f} GB/s = {best.fraction_of_copy:.1%} of copy "
        f"(block {best.block_size}, BLOCK_N {best.block_n}, warps {best.num_warps}, "
        f"stages {best.num_stages}); wrote {out}"
    )


if __name__ == "__main__":
    app()
