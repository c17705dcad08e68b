"""FLOPs and bytes per operator of one prefill and one decode step, their time floor on a GPU,
and, given measured times, achieved MFU / MBU per operator family."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from perfloop.engine.models.config import ModelConfig
from perfloop.profilers.gpus import GpuSpec
from perfloop.profilers.rows import Column, Row, columns

ROOFLINE_COLUMNS = columns(
    "stage",
    "operator",
    "family",
    "gflops=GFLOPs",
    "mb=MB",
    Column("intensity", "Intensity", "FLOP/B"),
    "floor_us=Floor",
    "bound",
)


class OpCost(BaseModel):
    """One operator of one step, summed over layers."""

    stage: str
    operator: str
    family: str  # gemm | attention | other, matching the kernel-table categories
    flops: float
    bytes: float


def load_model_config(model: str) -> ModelConfig:
    """`preset:NAME` (shape only, nothing materialised), a model directory, or a config.json path."""
    if model.startswith("preset:"):
        from perfloop.engine.models.presets import PRESETS

        name = model.split(":", 1)[1]
        if name not in PRESETS:
            raise ValueError(f"model: unknown preset {name!r}; known: {', '.join(PRESETS)}")
        return ModelConfig.from_hf(PRESETS[name])
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.exists():
        raise ValueError(f"model: {model} is neither preset:NAME, a model directory nor a config.json")
    return ModelConfig.from_hf(json.loads(path.read_text()))


def step_costs(cfg: ModelConfig, batch: int, context: int, stage: str, dtype_bytes: int = 2) -> list[OpCost]:
    """Costs of one step: decode = `batch` new tokens attending to `context` cached tokens each;
    prefill = `batch` prompts of `context` tokens (causal attention).

    The operators are the decoder's; the family's switches (`ModelConfig.qkv_bias`, `qk_norm`,
    from `engine.models.families`) add their bias reads and q/k norms. `lm_head` runs on one row
    per sequence in both stages: the engine computes logits only for each sequence's last token.
    """
    tokens = batch if stage == "decode" else batch * context
    b, layers = dtype_bytes, cfg.num_hidden_layers

    def gemm(
        name: str, k: int, n: int, n_layers: int = layers, bias: bool = False, rows: int = tokens
    ) -> OpCost:
        # weights (and bias) read once per step; activations in and out per row
        flops = 2.0 * rows * k * n + (rows * n if bias else 0)
        nbytes = (k * n + rows * (k + n) + (n if bias else 0)) * b
        return OpCost(
            stage=stage, operator=name, family="gemm", flops=flops * n_layers, bytes=float(nbytes * n_layers)
        )

    q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    return [
        gemm("qkv_proj", cfg.hidden_size, q + 2 * kv, bias=cfg.qkv_bias),
        _attention_cost(cfg, batch, context, stage, b),
        gemm("o_proj", q, cfg.hidden_size),
        gemm("gate_up_proj", cfg.hidden_size, 2 * cfg.intermediate_size),
        gemm("down_proj", cfg.intermediate_size, cfg.hidden_size),
        _elementwise_cost(cfg, tokens, stage, b),
        gemm("lm_head", cfg.hidden_size, cfg.vocab_size, n_layers=1, rows=batch),
    ]


def _attention_cost(cfg: ModelConfig, batch: int, context: int, stage: str, b: int) -> OpCost:
    """Paged attention: every new token reads the K/V of its context (causal in prefill)."""
    q, kv, layers = (
        cfg.num_attention_heads * cfg.head_dim,
        cfg.num_key_value_heads * cfg.head_dim,
        cfg.num_hidden_layers,
    )
    pairs = batch * context if stage == "decode" else batch * context * (context + 1) / 2
    tokens = batch if stage == "decode" else batch * context
    kv_bytes = 2.0 * batch * context * kv * b * layers
    q_io = 2.0 * tokens * q * b * layers
    return OpCost(
        stage=stage,
        operator="attention",
        family="attention",
        flops=4.0 * pairs * q * layers,
        bytes=kv_bytes + q_io,
    )


def _elementwise_cost(cfg: ModelConfig, tokens: int, stage: str, b: int) -> OpCost:
    """Two norms, two residual adds, rope and the activation (read + write), plus q/k norms if any."""
    h, layers = cfg.hidden_size, cfg.num_hidden_layers
    flops, nbytes = 10.0 * tokens * h * layers, 2.0 * tokens * h * b * layers * 6
    if cfg.qk_norm:
        qk = (cfg.num_attention_heads + cfg.num_key_value_heads) * cfg.head_dim
        flops += 4.0 * tokens * qk * layers
        nbytes += 2.0 * tokens * qk * b * layers
    return OpCost(stage=stage, operator="norms+residual+rope+act", family="other", flops=flops, bytes=nbytes)


def floor_us(op: OpCost, gpu: GpuSpec) -> float:
    """The roofline time floor: the slower of compute at peak and memory at full bandwidth."""
    return max(op.flops / (gpu.bf16_tflops * 1e12), op.bytes / (gpu.memory_bandwidth_tbs * 1e12)) * 1e6


def roofline_table(costs: list[OpCost], gpu: GpuSpec) -> list[Row]:
    """Rows per operator plus a total row per stage."""
    rows = []
    for stage in dict.fromkeys(c.stage for c in costs):
        ops = [c for c in costs if c.stage == stage]
        for op in ops:
            rows.append(_row(op, gpu))
        total = OpCost(
            stage=stage,
            operator="total",
            family="all",
            flops=sum(o.flops for o in ops),
            bytes=sum(o.bytes for o in ops),
        )
        row = _row(total, gpu)
        row["floor_us"] = round(sum(floor_us(o, gpu) for o in ops), 2)
        rows.append(row)
    return rows


def _row(op: OpCost, gpu: GpuSpec) -> Row:
    ridge = gpu.bf16_tflops / gpu.memory_bandwidth_tbs  # FLOPs per byte where the two limits meet
    intensity = op.flops / op.bytes if op.bytes else 0.0
    return {
        "stage": op.stage,
        "operator": op.operator,
        "family": op.family,
        "gflops": round(op.flops / 1e9, 3),
        "mb": round(op.bytes / 1e6, 3),
        "intensity": round(intensity, 2),
        "floor_us": round(floor_us(op, gpu), 2),
        "bound": "compute" if intensity >= ridge else "memory",
    }


ACHIEVED_COLUMNS = columns("stage", "family", "measured_us", "floor_us=Floor", "mfu_pct=MFU", "mbu_pct=MBU")


def achieved(costs: list[OpCost], measured_us: dict[tuple[str, str], float], gpu: GpuSpec) -> list[Row]:
    """MFU / MBU per (stage, family) from measured per-step device time of that family."""
    rows = []
    for (stage, family), us in sorted(measured_us.items()):
        ops = [c for c in costs if c.stage == stage and c.family == family]
        if not ops or us <= 0:
            continue
        flops, nbytes = sum(o.flops for o in ops), sum(o.bytes for o in ops)
        rows.append(
            {
                "stage": stage,
                "family": family,
                "measured_us": round(us, 2),
                "floor_us": round(sum(floor_us(o, gpu) for o in ops), 2),
                "mfu_pct": round(100 * flops / (us * 1e-6) / (gpu.bf16_tflops * 1e12), 2),
                "mbu_pct": round(100 * nbytes / (us * 1e-6) / (gpu.memory_bandwidth_tbs * 1e12), 2),
            }
        )
    return rows
