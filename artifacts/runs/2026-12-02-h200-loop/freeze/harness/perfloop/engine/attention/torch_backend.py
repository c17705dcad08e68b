"""Reference attention: gather each sequence's context from the paged cache, then masked SDPA.

Runs on any device and is the oracle the Triton backend is checked against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from perfloop.engine.attention.metadata import AttentionMetadata


def store_kv(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slots: torch.Tensor
) -> None:
    """Write new tokens' K/V rows into their cache slots."""
    k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, slots, k.to(k_cache.dtype))
    v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, slots, v.to(v_cache.dtype))


def gather_slots(meta: AttentionMetadata, device: torch.device) -> torch.Tensor:
    """[B, max_seq_len] cache slot of every context position (padding points at slot 0)."""
    pos = torch.arange(meta.max_seq_len, device=device)
    blocks = meta.block_tables.long().gather(1, (pos // meta.block_size).expand(meta.num_seqs, -1))
    return blocks * meta.block_size + pos % meta.block_size


class TorchAttention:
    """Padded batch attention over gathered paged KV; exact, not fast."""

    name = "torch"

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
        store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
        device = q.device
        b, mq, mk = meta.num_seqs, meta.max_query_len, meta.max_seq_len
        slots = gather_slots(meta, device)
        keys = k_cache.view(-1, *k_cache.shape[2:])[slots].to(q.dtype)  # [B, mk, Hkv, D]
        values = v_cache.view(-1, *v_cache.shape[2:])[slots].to(q.dtype)

        # Scatter the flat queries into a padded [B, mq, Hq, D] batch.
        qlens = torch.tensor(meta.query_lens_cpu, device=device)
        rows = torch.arange(mq, device=device).expand(b, -1)
        valid_q = rows < qlens[:, None]
        qpad = q.new_zeros(b, mq, *q.shape[1:])
        qpad[valid_q] = q

        # Query j of sequence i sits at position seq_len - query_len + j; causal over the context.
        seq_lens = meta.seq_lens.to(device).long()
        q_pos = seq_lens[:, None] - qlens[:, None] + rows  # [B, mq]
        k_pos = torch.arange(mk, device=device)
        mask = (k_pos[None, None, :] <= q_pos[:, :, None]) & (k_pos[None, None, :] < seq_lens[:, None, None])

        # GQA without copying K/V: fold each KV head's query group into the query-length axis.
        hkv, d = keys.shape[2], q.shape[-1]
        groups = q.shape[1] // hkv
        qg = qpad.view(b, mq, hkv, groups, d).permute(0, 2, 3, 1, 4).reshape(b, hkv, groups * mq, d)
        gmask = mask[:, None].expand(b, groups, mq, mk).reshape(b, 1, groups * mq, mk)
        out = F.scaled_dot_product_attention(
            qg, keys.transpose(1, 2), values.transpose(1, 2), attn_mask=gmask, scale=scale
        )
        out = out.view(b, hkv, groups, mq, d).permute(0, 3, 1, 2, 4).reshape(b, mq, hkv * groups, d)
        return out[valid_q]
