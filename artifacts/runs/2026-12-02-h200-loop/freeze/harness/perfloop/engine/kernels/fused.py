"""Fused Triton kernels for the decoder's small elementwise ops: RMSNorm (+ residual add), Qwen3's
per-head q/k RMSNorm + neox rotary embedding, and SiLU-and-mul.

Each kernel replays the torch code in `layers.py` rounding step by rounding step, so bf16/fp16 results
equal the torch path's (up to the order of the fp32 row sum): values are rounded to the storage dtype
exactly where torch rounds them, fp32 math is kept unfused (`enable_fp_fusion=False`: no FMA
contraction that torch's separate kernels cannot do), and SiLU uses IEEE division and libdevice `exp`,
the same `expf` torch's CUDA kernel calls.

All wrappers are CUDA-graph capturable: grids come from shapes, outputs are `torch.empty` of shapes
known on the host, nothing reads device values on the host. Run each shape once before capture so
Triton compiles outside it.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice
except ImportError:
    triton = None

# The CPU interpreter lacks libdevice; there SiLU falls back to tl.exp and plain division.
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def available(device: torch.device | str) -> bool:
    """True when the fused kernels can run on `device` (a CUDA device with triton importable)."""
    return triton is not None and torch.device(device).type == "cuda" and torch.cuda.is_available()


if triton is not None:

    @triton.jit
    def _rms_norm_kernel(
        x_ptr,
        res_ptr,
        w_ptr,
        out_ptr,
        res_out_ptr,
        n_rows,
        n_cols,
        x_stride,
        res_stride,
        eps,
        HAS_RES: tl.constexpr,
        ROWS: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
        cols = tl.arange(0, BLOCK)
        mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
        x = tl.load(x_ptr + rows[:, None] * x_stride + cols[None, :], mask=mask, other=0.0)
        in_dtype = x_ptr.dtype.element_ty
        if HAS_RES:
            r = tl.load(res_ptr + rows[:, None] * res_stride + cols[None, :], mask=mask, other=0.0)
            # torch adds in the input dtype: fp32 sum rounded once.
            x = (x.to(tl.float32) + r.to(tl.float32)).to(in_dtype)
            tl.store(res_out_ptr + rows[:, None] * n_cols + cols[None, :], x, mask=mask)
        h = x.to(tl.float32)
        var = tl.sum(h * h, axis=1) / n_cols
        h = h * tl.math.rsqrt(var + eps)[:, None]
        w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        out = w[None, :] * h.to(in_dtype).to(tl.float32)
        tl.store(
            out_ptr + rows[:, None] * n_cols + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=mask
        )

    @triton.jit
    def _norm_rope_heads(
        x_ptr,
        w_ptr,
        o_ptr,
        t,
        h0,
        num_heads,
        stride_t,
        stride_h,
        cos,
        sin,
        eps,
        D: tl.constexpr,
        HB: tl.constexpr,
        HAS_NORM: tl.constexpr,
    ):
        heads = h0 + tl.arange(0, HB)
        d = tl.arange(0, D)
        rd = (d + D // 2) % D  # partner lane of rotate-half
        mask = (heads < num_heads)[:, None]
        base = x_ptr + t * stride_t + heads[:, None] * stride_h
        x = tl.load(base + d[None, :], mask=mask, other=0.0)
        xr = tl.load(base + rd[None, :], mask=mask, other=0.0)
        in_dtype = x_ptr.dtype.element_ty
        out_dtype = o_ptr.dtype.element_ty
        if HAS_NORM:
            xf = x.to(tl.float32)
            inv = tl.math.rsqrt(tl.sum(xf * xf, axis=1) / D + eps)[:, None]
            w = tl.load(w_ptr + d).to(tl.float32)[None, :]
            wr = tl.load(w_ptr + rd).to(tl.float32)[None, :]
            x = (w * (xf * inv).to(in_dtype).to(tl.float32)).to(out_dtype)
            xr = (wr * (xr.to(tl.float32) * inv).to(in_dtype).to(tl.float32)).to(out_dtype)
        xr = xr.to(tl.float32)
        rotated = tl.where((d < D // 2)[None, :], -xr, xr)  # negation is exact, so fp32 is fine here
        out = x.to(tl.float32) * cos[None, :] + rotated * sin[None, :]
        dst = o_ptr + (t * num_heads + heads[:, None]) * D + d[None, :]
        tl.store(dst, out.to(out_dtype), mask=mask)

    @triton.jit
    def _qk_norm_rope_kernel(
        q_ptr,
        k_ptr,
        qw_ptr,
        kw_ptr,
        cos_ptr,
        sin_ptr,
        pos_ptr,
        qo_ptr,
        ko_ptr,
        num_q_heads,
        num_kv_heads,
        q_blocks,
        q_stride_t,
        q_stride_h,
        k_stride_t,
        k_stride_h,
        table_stride,
        eps,
        D: tl.constexpr,
        HB: tl.constexpr,
        HAS_NORM: tl.constexpr,
    ):
        t = tl.program_id(0).to(tl.int64)
        hb = tl.program_id(1)
        pos = tl.load(pos_ptr + t).to(tl.int64)
        d = tl.arange(0, D)
        cos = tl.load(cos_ptr + pos * table_stride + d).to(tl.float32)
        sin = tl.load(sin_ptr + pos * table_stride + d).to(tl.float32)
        if hb < q_blocks:
            _norm_rope_heads(
                q_ptr, qw_ptr, qo_ptr, t, hb * HB, num_q_heads, q_stride_t, q_stride_h,
                cos, sin, eps, D, HB, HAS_NORM,
            )  # fmt: skip
        else:
            _norm_rope_heads(
                k_ptr, kw_ptr, ko_ptr, t, (hb - q_blocks) * HB, num_kv_heads, k_stride_t, k_stride_h,
                cos, sin, eps, D, HB, HAS_NORM,
            )  # fmt: skip

    @triton.jit
    def _silu_and_mul_kernel(x_ptr, out_ptr, inter, x_stride, BLOCK: tl.constexpr, PRECISE: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < inter
        gate = tl.load(x_ptr + row * x_stride + cols, mask=mask, other=0.0).to(tl.float32)
        up = tl.load(x_ptr + row * x_stride + inter + cols, mask=mask, other=0.0).to(tl.float32)
        if PRECISE:
            silu = tl.math.div_rn(gate, 1.0 + libdevice.exp(-gate))
        else:
            silu = gate / (1.0 + tl.exp(-gate))
        dtype = out_ptr.dtype.element_ty
        out = silu.to(dtype).to(tl.float32) * up  # torch rounds silu's output before the mul
        tl.store(out_ptr + row * inter + cols, out.to(dtype), mask=mask)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x as [rows, last dim] with a unit column stride (a view when possible)."""
    x2 = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def _num_warps(elements: int) -> int:
    return max(1, min(8, elements // 512))


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """`weight * rmsnorm(x)` like `layers.RMSNorm`; with `residual`, normalises `x + residual` and also
    returns that sum (the new residual, in x's dtype). Output dtype is that of `weight * x`."""
    n = x.shape[-1]
    if weight.shape != (n,):
        raise ValueError(f"weight shape {tuple(weight.shape)} does not match hidden size {n}")
    if residual is not None and (residual.shape != x.shape or residual.dtype != x.dtype):
        raise ValueError("residual must have x's shape and dtype")
    out = torch.empty(x.shape, dtype=torch.promote_types(weight.dtype, x.dtype), device=x.device)
    new_res = torch.empty_like(x, memory_format=torch.contiguous_format) if residual is not None else None
    rows = x.numel() // n if n else 0
    if rows:
        x2 = _rows(x)
        r2 = _rows(residual) if residual is not None else x2
        block = triton.next_power_of_2(n)
        per_prog = max(1, min(16, 2048 // block))
        _rms_norm_kernel[(triton.cdiv(rows, per_prog),)](
            x2, r2, weight.contiguous(), out, new_res if new_res is not None else out,
            rows, n, x2.stride(0), r2.stride(0), eps,
            HAS_RES=residual is not None, ROWS=per_prog, BLOCK=block,
            num_warps=_num_warps(per_prog * block), enable_fp_fusion=False,
        )  # fmt: skip
    return out if new_res is None else (out, new_res)


def _heads_view(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() != 3:
        raise ValueError(f"{name} must be [tokens, heads, head_dim], got shape {tuple(x.shape)}")
    return x if x.stride(-1) == 1 else x.contiguous()


def qk_norm_rope(
    q: torch.Tensor,
    k: torch.Tensor,
    q_weight: torch.Tensor | None,
    k_weight: torch.Tensor | None,
    eps: float,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head RMSNorm (Qwen3; skipped when the weights are None) then neox rotate-half RoPE on
    q [T, Hq, D] and k [T, Hkv, D], one launch for both. `cos`/`sin` are [max_pos, D] tables indexed
    by `positions` [T]. Returns new contiguous tensors; q and k may be strided views (e.g. of a packed
    QKV output) as long as head_dim has a unit stride."""
    q, k = _heads_view(q, "q"), _heads_view(k, "k")
    t, hq, d = q.shape
    hkv = k.shape[1]
    if k.shape[0] != t or k.shape[2] != d or positions.shape != (t,):
        raise ValueError("q, k and positions must agree on tokens and head_dim")
    if d & (d - 1) or d < 2 or cos.shape[-1] != d or sin.shape != cos.shape or cos.stride(-1) != 1:
        raise ValueError("head_dim must be a power of two matching the unit-stride cos/sin tables")
    has_norm = q_weight is not None
    if has_norm != (k_weight is not None):
        raise ValueError("q_weight and k_weight must both be given or both be None")
    q_dt = torch.promote_types(q_weight.dtype, q.dtype) if has_norm else q.dtype
    k_dt = torch.promote_types(k_weight.dtype, k.dtype) if has_norm else k.dtype
    q_out = torch.empty(q.shape, dtype=q_dt, device=q.device)
    k_out = torch.empty(k.shape, dtype=k_dt, device=k.device)
    if t == 0:
        return q_out, k_out
    hb = min(triton.next_power_of_2(max(hq, hkv)), max(1, 1024 // d))
    q_blocks = triton.cdiv(hq, hb)
    _qk_norm_rope_kernel[(t, q_blocks + triton.cdiv(hkv, hb))](
        q, k, q_weight if has_norm else q, k_weight if has_norm else k, cos, sin, positions, q_out, k_out,
        hq, hkv, q_blocks, q.stride(0), q.stride(1), k.stride(0), k.stride(1), cos.stride(0), eps,
        D=d, HB=hb, HAS_NORM=has_norm, num_warps=_num_warps(hb * d), enable_fp_fusion=False,
    )  # fmt: skip
    return q_out, k_out


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """`silu(gate) * up` for gate_up [T, 2 * inter] holding gate then up, rounded like torch's two ops."""
    if gate_up.dim() != 2 or gate_up.shape[1] % 2:
        raise ValueError(f"gate_up must be [tokens, 2 * inter], got shape {tuple(gate_up.shape)}")
    x = _rows(gate_up)
    t, inter = x.shape[0], x.shape[1] // 2
    out = torch.empty(t, inter, dtype=x.dtype, device=x.device)
    if t and inter:
        block = min(1024, triton.next_power_of_2(inter))
        _silu_and_mul_kernel[(t, triton.cdiv(inter, block))](
            x, out, inter, x.stride(0), BLOCK=block, PRECISE=not _INTERPRET,
            num_warps=_num_warps(block), enable_fp_fusion=False,
        )  # fmt: skip
    return out
