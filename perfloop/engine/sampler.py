"""Token sampling: greedy, temperature, top-k, top-p, with optional per-request seeds."""

from __future__ import annotations

import torch

from perfloop.engine.sampling_params import SamplingParams


def _filter(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask logits outside top-k and outside the top-p nucleus (one row)."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        # Keep a token if the mass before it is below top_p (the first token is always kept).
        drop = probs.cumsum(-1) - probs >= max(top_p, 1e-6)  # a top_p that rounds to 0 keeps the top token
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return logits


def sample(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
    default: torch.Generator,
) -> torch.Tensor:
    """One token per row of logits [B, V], left on the device (the caller copies it to the host once)."""
    out = logits.argmax(-1)
    for i, p in enumerate(params):
        if p.greedy:
            continue
        row = _filter(logits[i].float() / p.temperature, p.top_k, p.top_p)
        gen = generators[i] or default
        out[i] = torch.multinomial(row.softmax(-1), 1, generator=gen)[0]
    return out
