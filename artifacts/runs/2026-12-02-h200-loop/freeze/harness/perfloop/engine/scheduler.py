"""Iteration-level (continuous) batching with a token budget, chunked prefill and recompute preemption.

Each step first serves running sequences in FCFS order (decodes take one token, unfinished
prefills their next chunk), preempting from the back of the running queue when blocks run
out, then admits waiting sequences FCFS while the token budget and max_num_seqs allow.
A preempted sequence frees its blocks and goes back to the front of the waiting queue; it
is recomputed later (prompt + tokens so far), so no request is ever dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from perfloop.engine.block_manager import BlockManager
from perfloop.engine.config import EngineConfig
from perfloop.engine.sequence import Sequence, Status


@dataclass
class ScheduledBatch:
    """What one step computes: each sequence and how many of its tokens."""

    seqs: list[Sequence]
    num_new_tokens: list[int]

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new_tokens)

    @property
    def max_new_tokens(self) -> int:
        return max(self.num_new_tokens)

    @property
    def stage(self) -> str:
        if self.max_new_tokens == 1:
            return "decode"  # one token each (a one-token prompt counts as decode: same work)
        decodes = sum(
            1 for s, n in zip(self.seqs, self.num_new_tokens, strict=True) if n == 1 and s.is_decode
        )
        return "prefill" if decodes == 0 else "mixed"


@dataclass
class SchedulerCounters:
    num_preemptions: int = 0
    num_prefill_chunks: int = 0  # prefill steps that left part of a prompt for later
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0


class Scheduler:
    """Decides, step by step, which tokens of which sequences to compute."""

    def __init__(self, config: EngineConfig, blocks: BlockManager) -> None:
        self.max_seqs = config.max_num_seqs
        self.budget = config.max_num_batched_tokens
        self.chunked = config.enable_chunked_prefill
        self.blocks = blocks
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.counters = SchedulerCounters()

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def schedule(self) -> ScheduledBatch:
        """Pick this step's work; may preempt running sequences to make room."""
        batch = ScheduledBatch([], [])
        budget = self.budget
        preemptions_before = self.counters.num_preemptions
        for seq in list(self.running):
            if seq.status is not Status.RUNNING:
                continue  # preempted above to make room for an earlier sequence
            if budget == 0:
                break
            n = min(seq.num_uncomputed, budget)
            if not self._allocate_or_preempt(seq, n):
                continue
            batch.seqs.append(seq)
            batch.num_new_tokens.append(n)
            budget -= n
        # After a preemption, admitting would only take back the blocks just freed.
        admit = self.counters.num_preemptions == preemptions_before
        while admit and self.waiting and budget > 0 and len(self.running) < self.max_seqs:
            seq = self.waiting[0]
            if not self._admit(seq, budget, batch):
                break
            budget -= batch.num_new_tokens[-1]
        if batch.seqs and batch.max_new_tokens > 1:
            self._count_chunks(batch)
        return batch

    def _admit(self, seq: Sequence, budget: int, batch: ScheduledBatch) -> bool:
        if not self._parent_ready(seq):
            return False
        hit = self.blocks.match_prefix(seq)
        n = seq.num_uncomputed
        if n > budget and not self.chunked:
            self._undo_prefix(seq)
            return False
        n = min(n, budget)
        if not self.blocks.allocate(seq, n):
            self._undo_prefix(seq)
            return False
        self.counters.prefix_cache_queries += seq.num_tokens
        self.counters.prefix_cache_hits += hit
        self.waiting.popleft()
        seq.status = Status.RUNNING
        self.running.append(seq)
        batch.seqs.append(seq)
        batch.num_new_tokens.append(n)
        return True

    def _parent_ready(self, seq: Sequence) -> bool:
        """A parallel-sampling sibling waits until its parent's full prompt blocks are in the prefix
        cache, so the n choices share the prompt's KV blocks instead of computing them n times."""
        parent = seq.parent
        if parent is None or not self.blocks.prefix_caching or parent.status is Status.FINISHED:
            return True
        return parent.num_hashed_blocks >= (len(seq.prompt_ids) - 1) // self.blocks.block_size

    def _undo_prefix(self, seq: Sequence) -> None:
        self.blocks.free_seq(seq)
        seq.num_computed = 0

    def _allocate_or_preempt(self, seq: Sequence, n: int) -> bool:
        while not self.blocks.allocate(seq, n):
            victim = self.running[-1]  # the newest sequence; not yet in this step's batch
            self._preempt(victim)
            if victim is seq:
                return False
        return True

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.free_seq(seq)
        seq.num_computed = 0
        seq.status = Status.WAITING
        self.waiting.appendleft(seq)
        self.counters.num_preemptions += 1

    def _count_chunks(self, batch: ScheduledBatch) -> None:
        for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
            if n < seq.num_uncomputed:
                self.counters.num_prefill_chunks += 1

    def finish(self, seq: Sequence, reason: str) -> None:
        """Retire a sequence (done or aborted) and free its blocks at once."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.free_seq(seq)
        seq.status = Status.FINISHED
        seq.finish_reason = reason
