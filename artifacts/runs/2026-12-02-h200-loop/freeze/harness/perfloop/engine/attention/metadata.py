"""Per-step attention metadata, built once by the runner and shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    """Where a step's tokens come from and go to in the paged KV cache.

    Tokens of all sequences are flattened (varlen): sequence i owns rows
    query_start_loc[i]:query_start_loc[i+1] of q/k/v. Its new tokens sit at the end of its
    context, so token j of sequence i has position seq_lens[i] - query_lens[i] + j.
    """

    slot_mapping: torch.Tensor  # [T] int64: block_id * block_size + offset for each new token
    query_start_loc: torch.Tensor  # [B+1] int32 on device
    seq_lens: torch.Tensor  # [B] int32: context length after this step (cached + new)
    block_tables: torch.Tensor  # [B, max_blocks] int32, rows padded with 0
    query_lens_cpu: list[int]  # host copies, so backends never sync to read them
    seq_lens_cpu: list[int]
    max_query_len: int
    max_seq_len: int
    block_size: int

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens_cpu)

    @property
    def is_decode(self) -> bool:
        """Every sequence adds exactly one token (the CUDA-graph case)."""
        return self.max_query_len == 1
