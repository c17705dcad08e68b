"""Triton kernels for paged attention: KV store, split-KV paged decode (+ reduce), paged prefill/extend.

Cache layout (fixed by the runner): `k_cache`/`v_cache` are `[num_blocks, block_size, Hkv, D]` with a
unit stride on D. Token `p` of sequence `b` lives in block `block_tables[b, p // block_size]` at
offset `p % block_size`. Every kernel looks the block up per token, so any power-of-two block size
works and a tile of `BLOCK_N` tokens may straddle pages.

Decode (one new token per sequence): grid `(Hkv, B, num_splits)`. A program loads all `G = Hq / Hkv`
query heads of its KV head as one `[16+, D]` tile (padded rows are masked), so each K/V row is read
from HBM once per KV head and the scores are a tensor-core `tl.dot`. Online softmax in fp32 over
`BLOCK_N`-token tiles. With `num_splits > 1` each program covers one contiguous slice of the
sequence (slice length computed on device from `seq_lens`), writes unnormalised partials, and a
reduce kernel merges them; this fills the SMs when `B * Hkv` is small (batch 1 decode).

Prefill/extend (any query lengths, mixed with decodes): the new tokens' K/V are stored first, then
the kernel reads the whole context (cached prefix + new tokens) from the paged cache, causal on
absolute positions `seq_len - query_len + j`. Grid `(cdiv(T, BLOCK_Q) + B, Hkv)`: sequence `i` owns
the tiles starting at `query_start_loc[i] // BLOCK_Q + i`, found by a vector count on device (no host
mapping, no sync). A tile packs `BLOCK_Q` query tokens times the padded GQA group into its M rows.

CUDA-graph replay of `paged_decode` (what the runner must hold fixed per captured graph):
- `num_splits` is chosen on the host from `(B, Hkv, max_seq_len)`; capture each batch bucket with the
  largest `max_seq_len` the graph will serve (e.g. `max_model_len`), or pass `num_splits` explicitly.
  The kernel reads the real lengths from `seq_lens` on device, so replays with shorter contexts are
  exact.
- `q`, `k`, `v`, `slot_mapping`, `seq_lens` and `block_tables` must be static buffers; `block_tables`
  keeps one row stride (slice rows `[:bs]` of one `[max_bs, max_blocks]` buffer).
- Padded batch rows: `slot_mapping = -1` (the store skips them) and any `seq_len` in `[0, max]` with
  valid block ids (0 is fine); `seq_len = 0` yields zeros.
- Run every bucket once eagerly before capture so Triton compiles outside the capture.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from perfloop.engine.kernels.gemv import gdc_launch_dependents, pdl_supported

LOG2E = 1.4426950408889634


@dataclass(frozen=True)
class DecodeConfig:
    """Launch parameters of the paged-decode kernel."""

    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 3


@dataclass(frozen=True)
class PrefillConfig:
    """Launch parameters of the prefill/extend kernel (`block_m` = query tokens x padded GQA group)."""

    block_m: int = 128
    block_n: int = 64
    num_warps: int = 8
    num_stages: int = 2


# Tokens a split should cover at least, so a split amortises its prologue and the reduce.
MIN_TOKENS_PER_SPLIT = 256
MAX_SPLITS = 32


def decode_config(head_dim: int, dtype: torch.dtype) -> DecodeConfig:
    """Default decode tile for a head size and dtype (fp32 tiles are halved to fit shared memory)."""
    if dtype == torch.float32:
        return DecodeConfig(block_n=32, num_warps=4, num_stages=2)
    return DecodeConfig(block_n=64 if head_dim >= 128 else 128, num_warps=4, num_stages=3)


def prefill_config(head_dim: int, dtype: torch.dtype) -> PrefillConfig:
    """Default prefill tile: 128x64 for 16-bit inputs, 64x32 for fp32."""
    if dtype == torch.float32:
        return PrefillConfig(block_m=64, block_n=32, num_warps=4, num_stages=1)
    if head_dim > 128:
        return PrefillConfig(block_m=64, block_n=64, num_warps=4, num_stages=2)
    return PrefillConfig()


def choose_num_splits(num_seqs: int, num_kv_heads: int, max_seq_len: int, num_sms: int) -> int:
    """Splits per (sequence, KV head) so the grid fills about eight waves of SMs; 1 when already full.

    Eight, not two: with ~2 programs resident per SM (shared memory of a 3-stage K/V pipeline), a
    grid of two waves leaves a half-empty tail; the H200 profile of batch-64 decode showed it.
    """
    programs = num_seqs * num_kv_heads
    target = 8 * num_sms
    if programs >= target:
        return 1
    by_length = max(1, max_seq_len // MIN_TOKENS_PER_SPLIT)
    splits = max(1, min(triton.cdiv(target, programs), by_length, MAX_SPLITS))
    # A power of two: NUM_SPLITS is a compile-time constant, so this bounds the kernel variants to six.
    return 1 << (splits.bit_length() - 1)


def _dot_precision(dtype: torch.dtype) -> str:
    """`ieee` keeps fp32 runs (the exactness oracle) out of tf32; `upcast` works around the CPU
    interpreter, whose 16-bit `tl.dot` returns garbage: it multiplies in fp32 instead, which equals a
    16-bit tensor-core dot with fp32 accumulation up to summation order."""
    if dtype == torch.float32:
        return "ieee"
    return "upcast" if interpreting() else "tf32"


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "").lower() in ("1", "true", "yes", "on")


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr):
    if PRECISION == "upcast":
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=PRECISION)


def _check_head_dim(head_dim: int) -> None:
    if head_dim < 16 or head_dim > 256 or head_dim & (head_dim - 1):
        raise ValueError(f"head_dim must be a power of two in 16..256 for the triton backend, got {head_dim}")


# --------------------------------------------------------------------------------------------- store


@triton.jit
def _store_kv_kernel(
    k_ptr,
    v_ptr,
    k_cache_ptr,
    v_cache_ptr,
    slot_ptr,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_cb,
    stride_cs,
    stride_ch,
    NUM_KV_HEADS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    PAGE: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    if slot < 0:  # padded token (CUDA-graph batch padding)
        return
    h = tl.arange(0, BLOCK_H)
    d = tl.arange(0, HEAD_DIM)
    mask = (h < NUM_KV_HEADS)[:, None]
    dst = (slot // PAGE) * stride_cb + (slot % PAGE) * stride_cs + h[:, None] * stride_ch + d[None, :]
    k = tl.load(k_ptr + t * stride_kt + h[:, None] * stride_kh + d[None, :], mask=mask)
    v = tl.load(v_ptr + t * stride_vt + h[:, None] * stride_vh + d[None, :], mask=mask)
    tl.store(k_cache_ptr + dst, k.to(k_cache_ptr.dtype.element_ty), mask=mask)
    tl.store(v_cache_ptr + dst, v.to(v_cache_ptr.dtype.element_ty), mask=mask)


def store_kv(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    """Write K/V rows `[T, Hkv, D]` into their cache slots; slots < 0 are skipped."""
    num_tokens, num_kv_heads, head_dim = k.shape
    if num_tokens == 0:
        return
    _check_head_dim(head_dim)
    k, v = _unit_last(k), _unit_last(v)
    _store_kv_kernel[(num_tokens,)](
        k,
        v,
        k_cache,
        v_cache,
        slot_mapping,
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        NUM_KV_HEADS=num_kv_heads,
        BLOCK_H=triton.next_power_of_2(num_kv_heads),
        HEAD_DIM=head_dim,
        PAGE=k_cache.shape[1],
        num_warps=4 if num_kv_heads * head_dim >= 1024 else 1,
    )


def _unit_last(x: torch.Tensor) -> torch.Tensor:
    """Kernels index D with unit stride; q/k/v slices of a fused QKV output already have it."""
    return x if x.stride(-1) == 1 else x.contiguous()


# -------------------------------------------------------------------------------------------- decode


@triton.jit(do_not_specialize=["stride_bt"])  # block-table width varies by step: no JIT mid-run
def _paged_decode_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    block_tables_ptr,
    seq_lens_ptr,
    out_ptr,
    part_acc_ptr,
    part_ml_ptr,
    qk_scale,
    stride_qt,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vs,
    stride_vh,
    stride_bt,
    stride_ot,
    stride_oh,
    GROUP: tl.constexpr,
    BLOCK_G: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PAGE: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    PRECISION: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):
    # KV head varies fastest, so the heads of one sequence run together and read each page's
    # [block_size, Hkv, D] rows as one contiguous region.
    kvh = tl.program_id(0)
    b = tl.program_id(1)
    split = tl.program_id(2)
    num_kv_heads = tl.num_programs(0)
    seq_len = tl.load(seq_lens_ptr + b)

    # Contiguous slice of this split, a whole number of BLOCK_N tiles.
    per_split = tl.cdiv(tl.cdiv(seq_len, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = split * per_split
    end = tl.minimum(start + per_split, seq_len)

    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, HEAD_DIM)
    gmask = g < GROUP
    heads = kvh * GROUP + g
    q = tl.load(
        q_ptr + b.to(tl.int64) * stride_qt + heads[:, None] * stride_qh + d[None, :],
        mask=gmask[:, None],
        other=0.0,
    )

    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
    bt_row = block_tables_ptr + b.to(tl.int64) * stride_bt
    for n0 in tl.range(start, end, BLOCK_N, num_stages=NUM_STAGES):
        pos = n0 + tl.arange(0, BLOCK_N)
        nmask = pos < end
        blk = tl.load(bt_row + pos // PAGE, mask=nmask, other=0).to(tl.int64)
        in_page = (pos % PAGE).to(tl.int64)
        k = tl.load(
            k_cache_ptr + (blk * stride_kb + in_page * stride_ks + kvh * stride_kh)[:, None] + d[None, :],
            mask=nmask[:, None],
            other=0.0,
        )
        s = _dot(q, tl.trans(k), PRECISION) * qk_scale
        s = tl.where(nmask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        v = tl.load(
            v_cache_ptr + (blk * stride_vb + in_page * stride_vs + kvh * stride_vh)[:, None] + d[None, :],
            mask=nmask[:, None],
            other=0.0,
        )
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, PRECISION)
        m_i = m_new

    if NUM_SPLITS == 1:
        out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
        o_ptrs = out_ptr + b.to(tl.int64) * stride_ot + heads[:, None] * stride_oh + d[None, :]
        tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty), mask=gmask[:, None])
    else:
        # Partials laid out [B, Hq, NUM_SPLITS, D] and [B, Hq, NUM_SPLITS, 2] (max, sum), fp32.
        row = (b * num_kv_heads * GROUP + heads).to(tl.int64) * NUM_SPLITS + split
        tl.store(part_acc_ptr + row[:, None] * HEAD_DIM + d[None, :], acc, mask=gmask[:, None])
        tl.store(part_ml_ptr + row * 2, m_i, mask=gmask)
        tl.store(part_ml_ptr + row * 2 + 1, l_i, mask=gmask)


@triton.jit
def _split_reduce_kernel(
    part_acc_ptr,
    part_ml_ptr,
    out_ptr,
    stride_ot,
    stride_oh,
    NUM_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    BLOCK_S: tl.constexpr,
    PDL: tl.constexpr,
):
    if PDL:  # the o_proj GEMV may launch now and stream its weights while this finishes
        gdc_launch_dependents()
    b = tl.program_id(0)
    h = tl.program_id(1)
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, HEAD_DIM)
    smask = s < NUM_SPLITS
    row = (b * NUM_HEADS + h).to(tl.int64) * NUM_SPLITS + s
    m = tl.load(part_ml_ptr + row * 2, mask=smask, other=float("-inf"))
    l_s = tl.load(part_ml_ptr + row * 2 + 1, mask=smask, other=0.0)
    m_max = tl.max(m, 0)
    m_max = tl.where(m_max == float("-inf"), 0.0, m_max)  # every split empty (seq_len 0)
    w = tl.exp2(m - m_max)
    acc = tl.load(part_acc_ptr + row[:, None] * HEAD_DIM + d[None, :], mask=smask[:, None], other=0.0)
    num = tl.sum(acc * w[:, None], 0)
    den = tl.sum(l_s * w, 0)
    out = num / tl.where(den > 0, den, 1.0)
    tl.store(out_ptr + b.to(tl.int64) * stride_ot + h * stride_oh + d, out.to(out_ptr.dtype.element_ty))


def paged_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    num_splits: int,
    out: torch.Tensor | None = None,
    config: DecodeConfig | None = None,
) -> torch.Tensor:
    """Attention of one query token per sequence (`q [B, Hq, D]`) over its paged context.

    Graph-safe: no host syncs; scratch shapes depend only on `(B, Hq, num_splits, D)`.
    """
    num_seqs, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    _check_head_dim(head_dim)
    q = _unit_last(q)
    cfg = config or decode_config(head_dim, q.dtype)
    out = torch.empty_like(q) if out is None else out
    if num_seqs == 0:
        return out
    group = num_heads // num_kv_heads
    if num_splits > 1:
        part_acc = torch.empty(
            num_seqs, num_heads, num_splits, head_dim, dtype=torch.float32, device=q.device
        )
        part_ml = torch.empty(num_seqs, num_heads, num_splits, 2, dtype=torch.float32, device=q.device)
    else:
        part_acc = part_ml = out  # unused by the single-split specialisation
    _paged_decode_kernel[(num_kv_heads, num_seqs, num_splits)](
        q,
        k_cache,
        v_cache,
        block_tables,
        seq_lens,
        out,
        part_acc,
        part_ml,
        scale * LOG2E,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        block_tables.stride(0),
        out.stride(0),
        out.stride(1),
        GROUP=group,
        BLOCK_G=max(16, triton.next_power_of_2(group)),
        HEAD_DIM=head_dim,
        BLOCK_N=cfg.block_n,
        PAGE=k_cache.shape[1],
        NUM_SPLITS=num_splits,
        PRECISION=_dot_precision(q.dtype),
        NUM_STAGES=cfg.num_stages,
        num_warps=cfg.num_warps,
    )
    if num_splits > 1:
        _split_reduce_kernel[(num_seqs, num_heads)](
            part_acc,
            part_ml,
            out,
            out.stride(0),
            out.stride(1),
            NUM_HEADS=num_heads,
            HEAD_DIM=head_dim,
            NUM_SPLITS=num_splits,
            BLOCK_S=triton.next_power_of_2(num_splits),
            PDL=pdl_supported(q.device),
            num_warps=4,
        )
    return out


# ------------------------------------------------------------------------------------------- prefill


@triton.jit
def _attend_tile(
    q,
    m_i,
    l_i,
    acc,
    k_cache_ptr,
    v_cache_ptr,
    bt_row,
    kvh,
    q_pos,
    n_start,
    n_end,
    qk_scale,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vs,
    stride_vh,
    HEAD_DIM: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PAGE: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Online-softmax update of one query tile over keys [n_start, n_end) of the paged context."""
    d = tl.arange(0, HEAD_DIM)
    for n0 in range(n_start, n_end, BLOCK_N):
        pos = n0 + tl.arange(0, BLOCK_N)
        nmask = pos < n_end
        blk = tl.load(bt_row + pos // PAGE, mask=nmask, other=0).to(tl.int64)
        in_page = (pos % PAGE).to(tl.int64)
        k = tl.load(
            k_cache_ptr + (blk * stride_kb + in_page * stride_ks + kvh * stride_kh)[:, None] + d[None, :],
            mask=nmask[:, None],
            other=0.0,
        )
        s = _dot(q, tl.trans(k), PRECISION) * qk_scale
        if CAUSAL:
            s = tl.where((pos[None, :] <= q_pos[:, None]) & nmask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # Rows fully masked so far (padded rows) keep m = -inf; shift by 0 to avoid inf - inf.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        v = tl.load(
            v_cache_ptr + (blk * stride_vb + in_page * stride_vs + kvh * stride_vh)[:, None] + d[None, :],
            mask=nmask[:, None],
            other=0.0,
        )
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, PRECISION)
        m_i = m_new
    return m_i, l_i, acc


@triton.jit(do_not_specialize=["num_seqs", "stride_bt"])  # vary by step: no JIT mid-run
def _paged_prefill_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    block_tables_ptr,
    seq_lens_ptr,
    query_start_loc_ptr,
    out_ptr,
    qk_scale,
    num_seqs,
    stride_qt,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vs,
    stride_vh,
    stride_bt,
    stride_ot,
    stride_oh,
    GROUP: tl.constexpr,
    GROUP_P: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PAGE: tl.constexpr,
    BLOCK_B: tl.constexpr,
    PRECISION: tl.constexpr,
):
    tile = tl.program_id(0)
    kvh = tl.program_id(1)

    # Sequence of this tile: the last i whose first tile ((qsl[i] - qsl[0]) // BLOCK_Q + i) is <= tile.
    # qsl values are absolute rows of q/out, so a slice of the batch (qsl[j:]) works unchanged.
    base = tl.load(query_start_loc_ptr)
    i_vec = tl.arange(0, BLOCK_B)
    starts = (tl.load(query_start_loc_ptr + i_vec, mask=i_vec < num_seqs, other=0) - base) // BLOCK_Q + i_vec
    seq = tl.sum(((starts <= tile) & (i_vec < num_seqs)).to(tl.int32), 0) - 1
    q_begin = tl.load(query_start_loc_ptr + seq)
    q_len = tl.load(query_start_loc_ptr + seq + 1) - q_begin
    q0 = (tile - ((q_begin - base) // BLOCK_Q + seq)) * BLOCK_Q
    if q0 >= q_len:
        return
    seq_len = tl.load(seq_lens_ptr + seq)
    ctx_len = seq_len - q_len

    # M rows = BLOCK_Q query tokens x GROUP_P heads of this KV head (rows past GROUP are padding).
    r = tl.arange(0, BLOCK_Q * GROUP_P)
    tok = q0 + r // GROUP_P
    head = kvh * GROUP + r % GROUP_P
    rmask = (tok < q_len) & (r % GROUP_P < GROUP)
    d = tl.arange(0, HEAD_DIM)
    row_off = (q_begin + tok).to(tl.int64)
    q = tl.load(
        q_ptr + (row_off * stride_qt + head * stride_qh)[:, None] + d[None, :], mask=rmask[:, None], other=0.0
    )
    q_pos = ctx_len + tok

    m_i = tl.full([BLOCK_Q * GROUP_P], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_Q * GROUP_P], tl.float32)
    acc = tl.zeros([BLOCK_Q * GROUP_P, HEAD_DIM], tl.float32)
    bt_row = block_tables_ptr + seq.to(tl.int64) * stride_bt

    # Keys before the tile's first query are visible to every row: whole tiles, no mask.
    full_end = ((ctx_len + q0) // BLOCK_N) * BLOCK_N
    m_i, l_i, acc = _attend_tile(
        q, m_i, l_i, acc, k_cache_ptr, v_cache_ptr, bt_row, kvh, q_pos, 0, full_end, qk_scale,
        stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
        HEAD_DIM, BLOCK_N, PAGE, False, PRECISION,
    )  # fmt: skip
    kv_end = tl.minimum(ctx_len + q0 + BLOCK_Q, seq_len)
    m_i, l_i, acc = _attend_tile(
        q, m_i, l_i, acc, k_cache_ptr, v_cache_ptr, bt_row, kvh, q_pos, full_end, kv_end, qk_scale,
        stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
        HEAD_DIM, BLOCK_N, PAGE, True, PRECISION,
    )  # fmt: skip

    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    o_ptrs = out_ptr + (row_off * stride_ot + head * stride_oh)[:, None] + d[None, :]
    tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty), mask=rmask[:, None])


def paged_prefill(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    query_start_loc: torch.Tensor,
    scale: float,
    out: torch.Tensor | None = None,
    config: PrefillConfig | None = None,
    num_query_tokens: int | None = None,
) -> torch.Tensor:
    """Causal varlen attention of `q [T, Hq, D]` over each sequence's paged context (prefix + new).

    The new tokens' K/V must already be in the cache (`store_kv`). `query_start_loc` holds absolute
    rows of `q`/`out`, so a run of sequences can be served alone by passing slices of
    `query_start_loc`/`seq_lens`/`block_tables` and their token count as `num_query_tokens`.
    """
    total_tokens, num_heads, head_dim = q.shape
    num_tokens = total_tokens if num_query_tokens is None else num_query_tokens
    num_kv_heads = k_cache.shape[2]
    num_seqs = seq_lens.shape[0]
    _check_head_dim(head_dim)
    q = _unit_last(q)
    cfg = config or prefill_config(head_dim, q.dtype)
    out = torch.empty_like(q) if out is None else out
    if num_tokens == 0:
        return out
    group = num_heads // num_kv_heads
    group_p = triton.next_power_of_2(group)
    block_q = max(1, cfg.block_m // group_p)
    grid = (triton.cdiv(num_tokens, block_q) + num_seqs, num_kv_heads)
    _paged_prefill_kernel[grid](
        q,
        k_cache,
        v_cache,
        block_tables,
        seq_lens,
        query_start_loc,
        out,
        scale * LOG2E,
        num_seqs,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        block_tables.stride(0),
        out.stride(0),
        out.stride(1),
        GROUP=group,
        GROUP_P=group_p,
        BLOCK_Q=block_q,
        HEAD_DIM=head_dim,
        BLOCK_N=cfg.block_n,
        PAGE=k_cache.shape[1],
        BLOCK_B=max(16, triton.next_power_of_2(num_seqs)),  # few variants, no 1-wide vectors
        PRECISION=_dot_precision(q.dtype),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return out


def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (132 on an H200; the same default off-GPU)."""
    if device.type != "cuda":
        return 132
    return torch.cuda.get_device_properties(device).multi_processor_count
