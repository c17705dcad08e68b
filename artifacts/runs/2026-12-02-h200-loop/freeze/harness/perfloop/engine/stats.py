"""Engine counters, as one record the server's /metrics and the CLI's --json read."""

from __future__ import annotations

from pydantic import BaseModel


class EngineStats(BaseModel):
    num_running: int
    num_waiting: int
    kv_blocks_total: int
    kv_blocks_used: int
    kv_usage: float
    prefix_cache_queries: int
    prefix_cache_hits: int
    prefix_cache_hit_rate: float
    num_preemptions: int
    num_prefill_chunks: int
    prompt_tokens: int
    generation_tokens: int
    num_steps: int
    peak_running: int
