"""Decode CUDA graphs: one graph per batch-size bucket, replayed over static input buffers.

A decode step launches a few hundred small kernels; replaying a captured graph removes their
launch cost from the host. Batches are padded up to the next bucket: padded rows write to no
cache slot (slot -1) and attend over a zero-length context. Larger batches run eagerly.
"""

from __future__ import annotations

import torch

from perfloop.engine.attention import AttentionBackend
from perfloop.engine.attention.metadata import AttentionMetadata
from perfloop.engine.models.decoder import DecoderLM

# The longest context a graph's split-KV choice is made for; longer contexts stay exact.
SPLIT_PLANNING_LEN = 4096


def buckets(max_bs: int) -> list[int]:
    """1, 2, 4, 8, then multiples of 16 up to max_bs."""
    sizes = [b for b in (1, 2, 4, 8) if b < max_bs] + list(range(16, max_bs + 1, 16))
    return sorted(set(sizes + [max_bs]))


class DecodeGraphs:
    """Captured decode forwards of `model`, sharing one memory pool and one set of static buffers."""

    def __init__(
        self,
        model: DecoderLM,
        backend: AttentionBackend,
        kv_cache: torch.Tensor,
        max_bs: int,
        max_blocks_per_seq: int,
        block_size: int,
        max_model_len: int,
    ) -> None:
        dev = kv_cache.device
        self.model, self.backend, self.kv_cache = model, backend, kv_cache
        self.block_size = block_size
        self.plan_len = min(max_model_len, SPLIT_PLANNING_LEN)
        self.input_ids = torch.zeros(max_bs, dtype=torch.long, device=dev)
        self.positions = torch.zeros(max_bs, dtype=torch.long, device=dev)
        self.slots = torch.full((max_bs,), -1, dtype=torch.long, device=dev)
        self.seq_lens = torch.zeros(max_bs, dtype=torch.int32, device=dev)
        self.block_tables = torch.zeros(max_bs, max_blocks_per_seq, dtype=torch.int32, device=dev)
        self.query_start = torch.arange(max_bs + 1, dtype=torch.int32, device=dev)
        self.sizes = buckets(max_bs)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self._capture_all()

    def _meta(self, bs: int) -> AttentionMetadata:
        return AttentionMetadata(
            slot_mapping=self.slots[:bs],
            query_start_loc=self.query_start[: bs + 1],
            seq_lens=self.seq_lens[:bs],
            block_tables=self.block_tables[:bs],
            query_lens_cpu=[1] * bs,
            seq_lens_cpu=[self.plan_len] * bs,
            max_query_len=1,
            max_seq_len=self.plan_len,
            block_size=self.block_size,
        )

    def _forward(self, bs: int) -> torch.Tensor:
        return self.model(
            self.input_ids[:bs], self.positions[:bs], self.kv_cache, self._meta(bs), self.backend
        )

    @torch.inference_mode()
    def _capture_all(self) -> None:
        self.model.annotate = False
        pool = None
        try:
            for bs in reversed(self.sizes):  # largest first, so smaller graphs reuse its pool
                self._forward(bs)  # compile Triton kernels outside the capture
                torch.cuda.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    self.outputs[bs] = self._forward(bs)
                pool = graph.pool()
                self.graphs[bs] = graph
        finally:
            self.model.annotate = True
        torch.cuda.synchronize()

    def fits(self, bs: int) -> bool:
        return bs <= self.sizes[-1]

    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """Hidden states [bs, hidden] of a decode step, replayed from the smallest bucket that holds it."""
        bs = meta.num_seqs
        size = next(s for s in self.sizes if s >= bs)
        self.input_ids[:bs].copy_(input_ids)
        self.positions[:bs].copy_(positions)
        self.slots[:bs].copy_(meta.slot_mapping)
        self.slots[bs:size].fill_(-1)
        self.seq_lens[:bs].copy_(meta.seq_lens)
        self.seq_lens[bs:size].zero_()
        width = meta.block_tables.shape[1]
        self.block_tables[:bs, :width].copy_(meta.block_tables)
        self.graphs[size].replay()
        return self.outputs[size][:bs]
