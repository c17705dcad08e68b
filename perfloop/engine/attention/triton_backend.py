"""Triton attention backend: KV store, then split-KV paged decode or paged prefill/extend.

Decode steps (every sequence adds one token) take the CUDA-graph-capturable decode kernel; every
other step (prefill, chunked prefill, prefix-cache hits, mixed decode + prefill) takes the varlen
prefill kernel, which reads the cached prefix and the new tokens from the paged cache. See
`triton_kernels` for what the runner must hold fixed when it replays a captured decode graph.
"""

from __future__ import annotations

import torch

from perfloop.engine.attention import triton_kernels as tk
from perfloop.engine.attention.metadata import AttentionMetadata


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
            splits = self.decode_splits(meta, k_cache.shape[2], q.device)
            return tk.paged_decode(q, k_cache, v_cache, meta.block_tables, meta.seq_lens, scale, splits)
        return tk.paged_prefill(
            q, k_cache, v_cache, meta.block_tables, meta.seq_lens, meta.query_start_loc, scale
        )

    def decode_splits(self, meta: AttentionMetadata, num_kv_heads: int, device: torch.device) -> int:
        """Split-KV factor of a decode step, from host-side shapes only (fixed per captured graph)."""
        if self.num_splits is not None:
            return self.num_splits
        if device not in self._sms:
            self._sms[device] = tk.num_sms(device)
        return tk.choose_num_splits(meta.num_seqs, num_kv_heads, meta.max_seq_len, self._sms[device])
