"""KV-cache capacity: bytes per token, page-rounded blocks, and how many requests fit at once."""

from __future__ import annotations

import math

from pydantic import BaseModel

from perfloop.engine.models.config import ModelConfig


class Capacity(BaseModel):
    """What a KV budget holds for one request shape."""

    kv_bytes_per_token: int
    block_size: int
    bytes_per_block: int
    num_blocks: int
    tokens_per_request: int
    blocks_per_request: int
    max_concurrent_requests: int
    max_tokens_in_pool: int


def kv_bytes_per_token(cfg: ModelConfig, dtype_bytes: int = 2) -> int:
    """K and V, every layer, every KV head."""
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * dtype_bytes


def capacity(
    cfg: ModelConfig, memory_gb: float, block_size: int, input_len: int, output_len: int, dtype_bytes: int = 2
) -> Capacity:
    """Capacity of a KV pool of `memory_gb` (1e9 bytes); a request holds ceil(tokens/block) blocks."""
    if memory_gb <= 0:
        raise ValueError("memory: must be > 0 GB")
    if block_size < 1 or input_len < 1 or output_len < 1:
        raise ValueError("block_size, input_len and output_len must be >= 1")
    per_token = kv_bytes_per_token(cfg, dtype_bytes)
    per_block = per_token * block_size
    blocks = int(memory_gb * 1e9) // per_block
    tokens = input_len + output_len
    per_request = math.ceil(tokens / block_size)
    return Capacity(
        kv_bytes_per_token=per_token,
        block_size=block_size,
        bytes_per_block=per_block,
        num_blocks=blocks,
        tokens_per_request=tokens,
        blocks_per_request=per_request,
        max_concurrent_requests=blocks // per_request,
        max_tokens_in_pool=blocks * block_size,
    )
