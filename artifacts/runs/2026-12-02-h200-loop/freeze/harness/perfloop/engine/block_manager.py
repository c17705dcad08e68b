"""Paged KV-cache block manager: free list, ref counts, chained block hashes for prefix caching.

A full block's hash covers its tokens and its predecessor's hash, so a hit on block i implies
the whole prefix up to block i matches; stored token ids are compared on a hit to rule out
collisions. Freed blocks keep their hash and go to the back of the free list; allocation takes
from the front, so the least recently freed cached block is reused first (LRU).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from perfloop.engine.sequence import Sequence


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None
    token_ids: tuple[int, ...] = field(default_factory=tuple)


def chain_hash(prev: int | None, tokens: tuple[int, ...]) -> int:
    """Hash of a full block given the hash of the block before it."""
    return hash((prev, tokens))


class BlockManager:
    """Owns the pool of KV blocks and each sequence's block table."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool) -> None:
        self.block_size = block_size
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.cached: dict[int, int] = {}  # block hash -> block id
        self.prefix_caching = enable_prefix_caching

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free(self) -> int:
        return len(self.free)

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def match_prefix(self, seq: Sequence) -> int:
        """Attach cached blocks for the longest hashed prefix of a fresh sequence; return tokens hit.

        The last prompt token is always recomputed so the step has logits to sample from. A request
        asking for prompt logprobs computes its whole prompt (cached positions have no logits).
        """
        if not self.prefix_caching or seq.block_table or seq.params.prompt_logprobs is not None:
            return 0
        prev: int | None = None
        hits: list[int] = []
        max_blocks = (seq.num_tokens - 1) // self.block_size
        for i in range(max_blocks):
            tokens = tuple(seq.token_ids[i * self.block_size : (i + 1) * self.block_size])
            h = chain_hash(prev, tokens)
            block_id = self.cached.get(h)
            if block_id is None or self.blocks[block_id].token_ids != tokens:
                break
            hits.append(block_id)
            prev = h
        for block_id in hits:
            self._take(block_id)
        seq.block_table = hits
        seq.num_hashed_blocks, seq.prefix_hash = len(hits), prev
        seq.num_computed = len(hits) * self.block_size
        return seq.num_computed

    def allocate(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Grow the block table to hold num_computed + num_new_tokens; False (nothing taken) if short."""
        need = self.blocks_needed(seq.num_computed + num_new_tokens) - len(seq.block_table)
        if need > len(self.free):
            return False
        for _ in range(need):
            block_id = next(iter(self.free))
            self._evict(block_id)
            self._take(block_id)
            seq.block_table.append(block_id)
        return True

    def commit_full_blocks(self, seq: Sequence) -> None:
        """Register newly completed full blocks of computed tokens in the prefix cache."""
        if not self.prefix_caching:
            return
        full = seq.num_computed // self.block_size
        prev = seq.prefix_hash
        for i in range(seq.num_hashed_blocks, full):
            block = self.blocks[seq.block_table[i]]
            tokens = tuple(seq.token_ids[i * self.block_size : (i + 1) * self.block_size])
            h = chain_hash(prev, tokens)
            if block.hash is None and h not in self.cached:
                block.hash, block.token_ids = h, tokens
                self.cached[h] = block.block_id
            prev = h
        seq.num_hashed_blocks, seq.prefix_hash = full, prev

    def free_seq(self, seq: Sequence) -> None:
        """Drop the sequence's references; blocks at ref 0 return to the back of the free list."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table = []
        seq.num_hashed_blocks, seq.prefix_hash = 0, None

    def _take(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self.free[block_id]
        block.ref_count += 1

    def _evict(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.hash is not None and self.cached.get(block.hash) == block_id:
            del self.cached[block.hash]
        block.hash, block.token_ids = None, ()
