"""Single-token matrix-vector products in Triton, with the decoder's neighbouring ops folded in.

At batch 1 every projection is a GEMV bound by reading its weight once, and the small kernels
between the projections (RMSNorm, SiLU-and-mul, residual add) cost launch and ramp time comparable to
a whole projection. Here the RMSNorm is folded into the following projection (the sum of squares
accumulates in the same K loop, the 1/rms scale is applied to the dot product at the end), SiLU-mul
into the down projection's input, and the residual add (and a QKV bias) into the output store.

Rounding differs from the unfused torch path (normalised inputs and SiLU stay fp32 instead of being
rounded to bf16 between ops), so this path is used only for bf16/fp16; fp32 keeps the exact torch
path. `layers.gemv_ops` decides when it applies; `PERFLOOP_GEMV=0` turns it off (A/B runs).
CUDA-graph capturable: no host reads of device data.

On Hopper the GEMVs are launched with programmatic dependent launch: each one starts while its
predecessor (another GEMV, or the attention split-reduce) drains, streams its first weight tile, and
waits (`gdc_wait`) only before reading activations. The kernel bound at one token is HBM latency at
each kernel edge as much as bandwidth; this hides most of it.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import torch

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None
try:  # programmatic dependent launch needs triton >= 3.3 (gdc ops and the launch_pdl option)
    from triton.backends.nvidia.compiler import CUDAOptions
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

    _HAS_PDL = "launch_pdl" in CUDAOptions.__dataclass_fields__
except ImportError:
    gdc_launch_dependents = gdc_wait = None
    _HAS_PDL = False


class Config(NamedTuple):
    """Tile and launch shape of one GEMV: BLOCK_N output rows per program, K read BLOCK_K at a time."""

    block_n: int
    block_k: int
    num_warps: int
    num_stages: int


def pdl_supported(device: torch.device) -> bool:
    """Programmatic dependent launch: Hopper or newer, compiled (not interpreted), not turned off with
    PERFLOOP_PDL=0. A kernel launched with it may start while the previous one drains."""
    return (
        _HAS_PDL
        and device.type == "cuda"
        and os.environ.get("TRITON_INTERPRET") != "1"
        and os.environ.get("PERFLOOP_PDL", "1") != "0"
        and _capability(device.index or 0) >= (9, 0)
    )


@functools.cache
def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


if triton is not None:

    @triton.jit
    def _load_tile(w_ptrs, k0, rows, cols, N, K, EVEN: tl.constexpr):
        if EVEN:
            return tl.load(w_ptrs + k0)
        return tl.load(w_ptrs + k0, mask=(rows < N)[:, None] & (k0 + cols < K)[None, :], other=0.0)

    @triton.jit
    def _load_vec(ptr, kk, K, EVEN: tl.constexpr):
        if EVEN:
            return tl.load(ptr + kk).to(tl.float32)
        return tl.load(ptr + kk, mask=kk < K, other=0.0).to(tl.float32)

    @triton.jit
    def _accumulate(
        acc, sumsq, w, x_ptr, g_ptr, kk, K, NORM: tl.constexpr, SILU: tl.constexpr, EVEN: tl.constexpr
    ):
        """acc += w * input[kk], where input is x, silu(gate) * up, or x * g (sumsq collects x^2)."""
        xk = _load_vec(x_ptr, kk, K, EVEN)
        if SILU:  # x holds gate then up
            xk = xk / (1.0 + tl.exp(-xk)) * _load_vec(x_ptr + K, kk, K, EVEN)
        if NORM:
            sumsq += xk * xk
            xk = xk * _load_vec(g_ptr, kk, K, EVEN)
        return acc + w.to(tl.float32) * xk[None, :], sumsq

    @triton.jit
    def _gemv_kernel(
        x_ptr,
        w_ptr,
        out_ptr,
        g_ptr,
        b_ptr,
        res_ptr,
        N,
        K,
        w_stride,
        eps,
        NORM: tl.constexpr,
        SILU: tl.constexpr,
        BIAS: tl.constexpr,
        RES: tl.constexpr,
        EVEN: tl.constexpr,
        PDL: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.arange(0, BLOCK_K)
        w_ptrs = w_ptr + rows.to(tl.int64)[:, None] * w_stride + cols[None, :]
        # Weights do not depend on the previous kernel: under programmatic dependent launch the first
        # tile is in flight while that kernel drains, and only the activations wait for it.
        w = _load_tile(w_ptrs, 0, rows, cols, N, K, EVEN)
        if PDL:
            gdc_launch_dependents()
            gdc_wait()
        acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
        sumsq = tl.zeros([BLOCK_K], dtype=tl.float32)
        acc, sumsq = _accumulate(acc, sumsq, w, x_ptr, g_ptr, cols, K, NORM, SILU, EVEN)
        for k0 in range(BLOCK_K, K, BLOCK_K):
            w = _load_tile(w_ptrs, k0, rows, cols, N, K, EVEN)
            acc, sumsq = _accumulate(acc, sumsq, w, x_ptr, g_ptr, k0 + cols, K, NORM, SILU, EVEN)
        y = tl.sum(acc, axis=1)
        if NORM:
            y = y * tl.math.rsqrt(tl.sum(sumsq, axis=0) / K + eps)
        nmask = rows < N
        if BIAS:
            y += tl.load(b_ptr + rows, mask=nmask, other=0.0).to(tl.float32)
        if RES:
            y += tl.load(res_ptr + rows, mask=nmask, other=0.0).to(tl.float32)
        tl.store(out_ptr + rows, y.to(out_ptr.dtype.element_ty), mask=nmask)


# Tiles measured best per weight shape (N, K) on an H200 with PDL, for the Llama-3.1-8B projections and
# LM head (`gemv_bench` sweep: artifacts/runs/2026-11-22-h200-standard/gemv_sweep_tuning.json).
# `gemv_bench.apply` overrides them in its own process.
TUNED: dict[tuple[int, int], Config] = {
    (6144, 4096): Config(8, 512, 4, 4),
    (4096, 4096): Config(16, 1024, 8, 4),
    (28672, 4096): Config(8, 256, 4, 4),
    (4096, 14336): Config(8, 1024, 4, 1),
    (128256, 4096): Config(16, 256, 4, 4),
}


def config(n: int, k: int) -> Config:
    """Tile shape for an [n, k] weight: a tuned one, else the largest power-of-two BLOCK_K (<= 512)
    dividing k."""
    if (n, k) in TUNED:
        return TUNED[(n, k)]
    block_k = min(512, k & -k)
    if block_k < 16:
        block_k = min(512, triton.next_power_of_2(k))
    return Config(block_n=8, block_k=block_k, num_warps=4, num_stages=3)


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    norm: tuple[torch.Tensor, float] | None = None,
    silu: bool = False,
    residual: torch.Tensor | None = None,
    cfg: Config | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """`F.linear` of one token x [1, K] (x [1, 2K] = gate|up with `silu`), returning [1, N] in x's dtype.

    `norm=(g, eps)` first applies RMSNorm with weight g to x; `silu` feeds silu(gate) * up;
    `residual` [1, N] is added to the output (with the bias, if any); `out` [1, N], if given, receives
    the result (the kernel task's harness preallocates it).
    """
    n, k = weight.shape
    if x.shape != (1, 2 * k if silu else k):
        raise ValueError(f"x shape {tuple(x.shape)} does not fit weight {tuple(weight.shape)} (silu={silu})")
    if weight.stride(1) != 1:
        raise ValueError("weight must have a unit stride along K")
    cfg = cfg or config(n, k)
    out = torch.empty(1, n, dtype=x.dtype, device=x.device) if out is None else out
    even = n % cfg.block_n == 0 and k % cfg.block_k == 0
    pdl = pdl_supported(x.device)
    x = x.contiguous()
    _gemv_kernel[(triton.cdiv(n, cfg.block_n),)](
        x, weight, out, norm[0] if norm else x, bias if bias is not None else x,
        residual if residual is not None else x, n, k, weight.stride(0), norm[1] if norm else 0.0,
        NORM=norm is not None, SILU=silu, BIAS=bias is not None, RES=residual is not None, EVEN=even,
        PDL=pdl, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, num_warps=cfg.num_warps,
        num_stages=cfg.num_stages, **({"launch_pdl": True} if pdl else {}),
    )  # fmt: skip
    return out
