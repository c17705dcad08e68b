"""Token sampling: logits processing (penalties, bias, min_tokens, allowed ids), greedy, temperature,
min-p, top-k, top-p, optional per-request seeds, and logprobs.

Rows of requests that change no logits take the plain path (argmax, or temperature/top-k/top-p on
their own row), so another request's parameters never change their tokens (batch invariance).
Logprobs are those of the raw model logits (vLLM's default `raw_logprobs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from perfloop.engine.sampling_params import SamplingParams


@dataclass
class RowContext:
    """What logits processing needs to know about one row's request."""

    token_ids: list[int]  # prompt + output so far, on the host
    num_prompt: int
    stop_ids: list[int]  # tokens banned while fewer than min_tokens were generated


@dataclass
class Logprob:
    """One position's logprob and its top alternatives (token id, logprob), best first."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]]


# A row's logprobs while still on the device: chosen logprob(s) [n], top values [n, k], top ids [n, k].
LogprobTensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _filter(logits: torch.Tensor, top_k: int, top_p: float, min_p: float = 0.0) -> torch.Tensor:
    """Mask logits outside min-p, top-k and the top-p nucleus (one row)."""
    if min_p > 0.0:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < min_p * probs.max(), float("-inf"))
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


def process_row(row: torch.Tensor, p: SamplingParams, ctx: RowContext) -> torch.Tensor:
    """Apply allowed ids, logit bias, min_tokens and the penalties to one fp32 row of logits."""
    device, vocab = row.device, row.shape[-1]
    if p.allowed_token_ids is not None:
        keep = torch.zeros(vocab, dtype=torch.bool, device=device)
        keep[torch.tensor(p.allowed_token_ids, device=device)] = True
        row = row.masked_fill(~keep, float("-inf"))
    if p.logit_bias:
        ids = torch.tensor(list(p.logit_bias), device=device)
        row = row.index_add(0, ids, torch.tensor(list(p.logit_bias.values()), device=device, dtype=row.dtype))
    num_output = len(ctx.token_ids) - ctx.num_prompt
    if num_output < p.min_tokens and ctx.stop_ids:
        row = row.index_fill(0, torch.tensor(ctx.stop_ids, device=device), float("-inf"))
    if p.needs_history:
        row = _penalise(row, p, ctx)
    return row


def _penalise(row: torch.Tensor, p: SamplingParams, ctx: RowContext) -> torch.Tensor:
    """vLLM's penalties: repetition over prompt and output tokens, presence/frequency over output."""
    vocab = row.shape[-1]
    output = torch.tensor(ctx.token_ids[ctx.num_prompt :], dtype=torch.long, device=row.device)
    counts = torch.bincount(output, minlength=vocab)[:vocab].to(row.dtype)
    if p.repetition_penalty != 1.0:
        seen = counts > 0
        seen[torch.tensor(ctx.token_ids[: ctx.num_prompt], device=row.device)] = True
        scaled = torch.where(row > 0, row / p.repetition_penalty, row * p.repetition_penalty)
        row = torch.where(seen, scaled, row)
    return row - p.frequency_penalty * counts - p.presence_penalty * (counts > 0).to(row.dtype)


def sample(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
    default: torch.Generator,
    contexts: list[RowContext | None] | None = None,
) -> torch.Tensor:
    """One token per row of logits [B, V], left on the device (the caller copies it to the host once).

    `contexts` is needed only when some row processes logits (see `SamplingParams.processes_logits`).
    """
    out = logits.argmax(-1)
    for i, p in enumerate(params):
        processed = p.processes_logits
        if p.greedy and not processed:
            continue
        row = logits[i].float()
        if processed:
            assert contexts is not None and contexts[i] is not None, "logits processing needs the row context"
            row = process_row(row, p, contexts[i])
        if p.greedy:
            out[i] = row.argmax(-1)
            continue
        probs = _filter(row / p.temperature, p.top_k, p.top_p, p.min_p).softmax(-1)
        # A row with nothing left to sample (every token banned, or overflow at a tiny temperature)
        # takes its top logit instead of killing the engine for every request; decided on the
        # device, so a pipelined step never waits for the host.
        top = torch.zeros_like(probs).scatter_(0, row.argmax(-1, keepdim=True), 1.0)
        valid = torch.isfinite(probs).all() & (probs.sum() > 0)
        out[i] = torch.multinomial(torch.where(valid, probs, top), 1, generator=generators[i] or default)[0]
    return out


def token_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, params: list[SamplingParams]
) -> dict[int, LogprobTensors]:
    """For rows asking for logprobs: the sampled token's logprob and the top-k, still on the device."""
    out: dict[int, LogprobTensors] = {}
    for i, p in enumerate(params):
        if p.logprobs is None:
            continue
        logp = logits[i].float().log_softmax(-1)
        top = logp.topk(p.logprobs) if p.logprobs else (logp[:0], tokens[:0])
        out[i] = (logp[tokens[i]].reshape(1), top[0][None], top[1][None])
    return out


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor, k: int) -> LogprobTensors:
    """Logprobs of given next tokens (prompt logprobs) [n], and the top-k of each position."""
    logp = logits.float().log_softmax(-1)
    chosen = logp.gather(1, targets[:, None])[:, 0]
    values, ids = logp.topk(k, dim=-1) if k else (logp[:, :0], targets[:, None][:, :0])
    return chosen, values, ids


def to_host(tensors: LogprobTensors, token_ids: list[int]) -> list[Logprob]:
    """Device logprob tensors of len(token_ids) positions as host records."""
    chosen, values, ids = (t.tolist() for t in tensors)
    return [
        Logprob(tok, lp, list(zip(top_ids, top_vals, strict=True)))
        for tok, lp, top_vals, top_ids in zip(token_ids, chosen, values, ids, strict=True)
    ]
