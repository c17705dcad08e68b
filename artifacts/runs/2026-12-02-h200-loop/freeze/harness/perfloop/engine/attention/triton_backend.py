"""Triton attention backend: KV store, then split-KV paged decode or paged prefill/extend.

Decode steps (every sequence adds one token) take the CUDA-graph-capturable decode kernel; prefill,
chunked prefill and prefix-cache hits take the varlen prefill kernel, which reads the cached prefix
and the new tokens from the paged cache. In a mixed step, a leading or trailing run of one-token
sequences goes to the decode kernel (split-KV, no wasted query rows) and the rest to the prefill
kernel, both on views of the same tensors; decodes scattered between prefills all take the prefill
kernel (correct, slower). See `kernels.paged_attention` for what the runner must hold fixed when it replays a
captured decode graph.
"""

from __future__ import annotations

import torch

from perfloop.engine.attention.metadata import AttentionMetadata
from perfloop.engine.kernels import paged_attention as tk


class TritonAttention:
    """Paged attention on Triton kernels; matches the `torch` backend within dtype tolerance."""

    name = "triton"

    def __init__(self, num_splits: int | None = None) -> None:
        """`num_splits` pins the decode split count (tests, tuning); None picks it from the batch shape."""
        if num_splits is not None and num_splits < 1:
            raise ValueError(f"num_splits must be >= 1, got {num_splits}")
        self.num_splits = num_splits
        self._sms: dict[torch.device, int] = {}

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
        scale: float,
    ) -> torch.Tensor:
        """q [T, Hq, D], k/v [T, Hkv, D], caches [num_blocks, block_size, Hkv, D] -> out [T, Hq, D]."""
        tk.store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
        if meta.is_decode and q.shape[0] == meta.num_seqs:
            splits = self.decode_splits(meta.num_seqs, meta.max_seq_len, k_cache.shape[2], q.device)
            return tk.paged_decode(q, k_cache, v_cache, meta.block_tables, meta.seq_lens, scale, splits)
        out = torch.empty_like(q)
        lo, hi = decode_run(meta.query_lens_cpu)
        if hi > lo:
            # Decode rows of a run of one-token sequences are rows lo:hi of q (one row each).
            tokens_before = sum(meta.query_lens_cpu[:lo])
            rows = slice(tokens_before, tokens_before + hi - lo)
            # One split: a mixed step's time is its prefill, and a fixed count keeps the JIT out of it.
            splits = 1
            tk.paged_decode(
                q[rows],
                k_cache,
                v_cache,
                _aligned(meta.block_tables[lo:hi]),
                _aligned(meta.seq_lens[lo:hi]),
                scale,
                splits,
                out[rows],
            )
        # The prefill run is the complement of [lo, hi): before it or after it.
        plo, phi = (hi, meta.num_seqs) if lo == 0 else (0, lo)
        if phi > plo:
            tk.paged_prefill(
                q, k_cache, v_cache, _aligned(meta.block_tables[plo:phi]), _aligned(meta.seq_lens[plo:phi]),
                _aligned(meta.query_start_loc[plo : phi + 1]), scale, out=out,
                num_query_tokens=sum(meta.query_lens_cpu[plo:phi]),
            )  # fmt: skip
        return out

    def decode_splits(self, num_seqs: int, max_seq_len: int, num_kv_heads: int, device: torch.device) -> int:
        """Split-KV factor of a decode call, from host-side shapes only (fixed per captured graph)."""
        if self.num_splits is not None:
            return self.num_splits
        if device not in self._sms:
            self._sms[device] = tk.num_sms(device)
        return tk.choose_num_splits(num_seqs, num_kv_heads, max_seq_len, self._sms[device])


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """A slice starting mid-tensor may not be 16-byte aligned, and Triton compiles a new kernel
    variant per alignment; a fresh copy (a few bytes of metadata) keeps one variant."""
    return t if t.data_ptr() % 16 == 0 else t.clone()


def decode_run(query_lens: list[int]) -> tuple[int, int]:
    """Sequences [lo, hi) of the longer leading or trailing run of one-token queries; (0, 0) if none."""
    lead = next((i for i, n in enumerate(query_lens) if n != 1), len(query_lens))
    trail = next((i for i, n in enumerate(reversed(query_lens)) if n != 1), len(query_lens))
    if lead == 0 and trail == 0:
        return 0, 0
    if lead >= trail:
        return 0, lead
    return len(query_lens) - trail, len(query_lens)
