"""A request as the scheduler sees it: its tokens, its KV blocks and how far it has been computed."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import torch

from perfloop.engine.sampler import Logprob
from perfloop.engine.sampling_params import SamplingParams

PLACEHOLDER = -1


class Status(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)  # identity semantics: the scheduler looks sequences up in its queues
class Sequence:
    """Prompt + generated tokens; `num_computed` of them have their K/V in the cache."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    token_ids: list[int] = field(default_factory=list)
    block_table: list[int] = field(default_factory=list)
    num_computed: int = 0
    num_hashed_blocks: int = 0  # leading full blocks already registered in the prefix cache
    prefix_hash: int | None = None  # chain hash of those blocks' contents
    status: Status = Status.WAITING
    finish_reason: str | None = None
    generator: torch.Generator | None = None
    # While the step that samples the last token is in flight, that token is a placeholder on the
    # host and `pending_index` is its row in that step's device tensor of sampled tokens.
    pending_index: int | None = None
    # Tokens min_tokens keeps from being sampled (EOS unless ignored, and stop_token_ids).
    stop_ids: list[int] = field(default_factory=list)
    # Parallel sampling (n > 1): the first sibling, whose prompt blocks this one waits to share.
    parent: Sequence | None = None
    # Prompt logprobs by prompt position (1..len-1), filled as prefill chunks finish.
    prompt_logprobs: dict[int, Logprob] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.token_ids:
            self.token_ids = list(self.prompt_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output(self) -> int:
        return len(self.token_ids) - len(self.prompt_ids)

    @property
    def num_uncomputed(self) -> int:
        return self.num_tokens - self.num_computed

    @property
    def is_decode(self) -> bool:
        """Only the newest sampled token is missing from the cache."""
        return self.num_uncomputed == 1 and len(self.token_ids) > len(self.prompt_ids)
