"""Attention backends behind one interface: `torch` (reference, everywhere) and `triton` (CUDA)."""

from __future__ import annotations

from typing import Protocol

import torch

from perfloop.engine.attention.metadata import AttentionMetadata


class AttentionBackend(Protocol):
    """Writes the new tokens' K/V into the paged cache, then attends over each sequence's context."""

    name: str

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
        ...


def get_backend(name: str, device: torch.device) -> AttentionBackend:
    """Pick a backend by name; `auto` is triton on CUDA and torch elsewhere."""
    if name == "auto":
        name = "triton" if device.type == "cuda" else "torch"
    if name == "torch":
        from perfloop.engine.attention.torch_backend import TorchAttention

        return TorchAttention()
    if name == "triton":
        if device.type != "cuda":
            raise ValueError("attention_backend=triton needs a CUDA device")
        from perfloop.engine.attention.triton_backend import TritonAttention

        return TritonAttention()
    raise ValueError(f"unknown attention_backend {name!r} (expected auto, torch or triton)")
