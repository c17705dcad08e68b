"""Per-request logits work around a step: sampler row contexts and prompt logprobs.

Kept apart from the runner's input building: the runner calls these two hooks only for steps
that hold a request asking for them, so the default path is untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence as Seq
from typing import TYPE_CHECKING

import torch

from perfloop.engine.sampler import LogprobTensors, RowContext, target_logprobs
from perfloop.engine.scheduler import ScheduledBatch
from perfloop.engine.sequence import Sequence

if TYPE_CHECKING:
    from perfloop.engine.runner import StepHandle


def row_contexts(seqs: Seq[Sequence], prev: StepHandle | None) -> list[RowContext | None]:
    """Host token history of the rows that process logits; the others get None.

    A row whose last token is still a placeholder (sampled by the step in flight) needs it for
    its penalties: only then does this wait for the previous step's tokens.
    """
    out: list[RowContext | None] = []
    for seq in seqs:
        if not seq.params.processes_logits:
            out.append(None)
            continue
        ids = seq.token_ids
        if seq.params.needs_history and seq.pending_index is not None and prev is not None:
            ids = [*ids[:-1], prev.tokens()[seq.pending_index]]
        out.append(RowContext(list(ids), len(seq.prompt_ids), seq.stop_ids))
    return out


def prompt_logprobs(
    batch: ScheduledBatch, hidden: torch.Tensor, compute_logits: Callable[[torch.Tensor], torch.Tensor]
) -> dict[int, tuple[int, LogprobTensors]]:
    """For each sequence asking for prompt logprobs: (first prompt position scored, its logprobs).

    The logits at position p score prompt token p + 1; this step computes positions
    [num_computed, num_computed + n) of each sequence, with rows laid out back to back.
    """
    out: dict[int, tuple[int, LogprobTensors]] = {}
    start = 0
    for i, (seq, n) in enumerate(zip(batch.seqs, batch.num_new_tokens, strict=True)):
        k = seq.params.prompt_logprobs
        first, last = seq.num_computed, min(seq.num_computed + n, len(seq.prompt_ids) - 1)
        if k is not None and last > first:
            rows = torch.arange(start, start + last - first, device=hidden.device)
            targets = torch.tensor(seq.prompt_ids[first + 1 : last + 1], device=hidden.device)
            out[i] = (first + 1, target_logprobs(compute_logits(hidden[rows]), targets, k))
        start += n
    return out
