"""The Llama / Qwen2 / Qwen3 decoder over flattened (varlen) tokens and a paged KV cache.

The families differ only in switches their `families.py` entry turns on (QKV bias for Qwen2,
per-head q/k RMSNorm for Qwen3); ModelConfig carries them and the modules below are built from
them. Q/K/V and gate/up are packed into single matmuls at load.
A single bf16/fp16 token (batch-1 decode) takes `DecoderLayer.forward_token`: every projection is a
weight-read-bound GEMV, so the norms, SiLU-mul and residual adds ride inside them (`gemv.py`).
"""

from __future__ import annotations

from contextlib import nullcontext
from types import ModuleType

import torch
from torch import nn
from torch.profiler import record_function

from perfloop.engine.attention import AttentionBackend
from perfloop.engine.attention.metadata import AttentionMetadata
from perfloop.engine.models.config import ModelConfig
from perfloop.engine.models.layers import GatedMLP, RMSNorm, RotaryEmbedding, fused_ops, gemv_ops


class Attention(nn.Module):
    """Packed QKV projection, optional q/k norm, rotary, paged attention, output projection."""

    def __init__(self, cfg: ModelConfig, rope: RotaryEmbedding) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        self.q_size = self.num_heads * self.head_dim
        self.kv_size = self.num_kv_heads * self.head_dim
        self.qkv_proj = nn.Linear(cfg.hidden_size, self.q_size + 2 * self.kv_size, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(self.q_size, cfg.hidden_size, bias=False)
        self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps) if cfg.qk_norm else None
        self.rope = rope
        self.scale = self.head_dim**-0.5

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata,
        backend: AttentionBackend,
    ) -> torch.Tensor:
        return self.o_proj(self.attend(self.qkv_proj(x), positions, kv, meta, backend))

    def attend(
        self,
        qkv: torch.Tensor,
        positions: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata,
        backend: AttentionBackend,
    ) -> torch.Tensor:
        """Attention output [T, Hq * D] (before o_proj) of the packed QKV projection qkv."""
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(-1, self.num_heads, self.head_dim)
        k = k.view(-1, self.num_kv_heads, self.head_dim)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        if ops := fused_ops(qkv):
            qw, kw = (self.q_norm.weight, self.k_norm.weight) if self.q_norm is not None else (None, None)
            eps = self.q_norm.eps if self.q_norm is not None else 0.0
            q, k = ops.qk_norm_rope(q, k, qw, kw, eps, self.rope.cos, self.rope.sin, positions)
        else:
            if self.q_norm is not None:
                q, k = self.q_norm(q), self.k_norm(k)
            q, k = self.rope(positions, q, k)
        out = backend.forward(q, k, v, kv[0], kv[1], meta, self.scale)
        return out.reshape(-1, self.q_size)


class DecoderLayer(nn.Module):
    """Pre-norm attention + gated MLP, residual carried through the fused norms."""

    def __init__(self, cfg: ModelConfig, rope: RotaryEmbedding) -> None:
        super().__init__()
        self.self_attn = Attention(cfg, rope)
        self.mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None,
        positions: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata,
        backend: AttentionBackend,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            residual = x
            x = self.input_layernorm(x)
        else:
            x, residual = self.input_layernorm(x, residual)
        with record_function("perfloop.attn"):
            x = self.self_attn(x, positions, kv, meta, backend)
        x, residual = self.post_attention_layernorm(x, residual)
        with record_function("perfloop.mlp"):
            x = self.mlp(x)
        return x, residual

    def forward_token(
        self,
        h: torch.Tensor,
        positions: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata,
        backend: AttentionBackend,
        gemv: ModuleType,
    ) -> torch.Tensor:
        """One token's residual stream h [1, hidden] through the layer, in four fused GEMVs."""
        attn, mlp = self.self_attn, self.mlp
        with record_function("perfloop.attn"):
            ln = self.input_layernorm
            qkv = gemv.linear(h, attn.qkv_proj.weight, attn.qkv_proj.bias, norm=(ln.weight, ln.eps))
            h = gemv.linear(attn.attend(qkv, positions, kv, meta, backend), attn.o_proj.weight, residual=h)
        with record_function("perfloop.mlp"):
            ln = self.post_attention_layernorm
            gate_up = gemv.linear(h, mlp.gate_up_proj.weight, norm=(ln.weight, ln.eps))
            return gemv.linear(gate_up, mlp.down_proj.weight, silu=True, residual=h)


class DecoderLM(nn.Module):
    """Embeddings, decoder layers, final norm and (possibly tied) LM head."""

    def __init__(self, cfg: ModelConfig, max_positions: int) -> None:
        super().__init__()
        self.cfg = cfg
        rope = RotaryEmbedding(cfg.head_dim, max_positions, cfg.rope_theta, cfg.rope_scaling)
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, rope) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = (
            None if cfg.tie_word_embeddings else nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        )
        self.annotate = True  # per-layer record_function ranges; off while capturing CUDA graphs

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_cache: torch.Tensor,
        meta: AttentionMetadata,
        backend: AttentionBackend,
    ) -> torch.Tensor:
        """Hidden states [T, hidden] after the final norm; kv_cache is [2, L, blocks, block, Hkv, D]."""
        x = self.embed_tokens(input_ids)
        gemv = gemv_ops(x)
        residual = None
        for i, layer in enumerate(self.layers):
            kv = (kv_cache[0, i], kv_cache[1, i])
            with record_function(f"perfloop.layer.{i}") if self.annotate else nullcontext():
                if gemv:
                    x = layer.forward_token(x, positions, kv, meta, backend, gemv)
                else:
                    x, residual = layer(x, residual, positions, kv, meta, backend)
        return self.norm(x) if gemv else self.norm(x, residual)[0]

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits [T, vocab] in the model dtype."""
        weight = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        if gemv := gemv_ops(hidden):
            return gemv.linear(hidden, weight)
        return torch.nn.functional.linear(hidden, weight)
