"""Load HF safetensors checkpoints (one file or sharded) into the packed decoder."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from perfloop.engine.models.decoder import DecoderLM

# HF name fragment -> (packed parameter fragment, shard index within the packed tensor)
_PACKED = {
    "self_attn.q_proj": ("self_attn.qkv_proj", 0),
    "self_attn.k_proj": ("self_attn.qkv_proj", 1),
    "self_attn.v_proj": ("self_attn.qkv_proj", 2),
    "mlp.gate_proj": ("mlp.gate_up_proj", 0),
    "mlp.up_proj": ("mlp.gate_up_proj", 1),
}


def _target(hf_name: str) -> tuple[str, int | None]:
    name = hf_name.removeprefix("model.")
    for frag, (packed, shard) in _PACKED.items():
        if frag in name:
            return name.replace(frag, packed), shard
    return name, None


def _shard_slice(model: DecoderLM, packed_name: str, shard: int) -> slice:
    cfg = model.cfg
    if "qkv_proj" in packed_name:
        q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
        starts, sizes = [0, q, q + kv], [q, kv, kv]
    else:
        starts, sizes = [0, cfg.intermediate_size], [cfg.intermediate_size] * 2
    return slice(starts[shard], starts[shard] + sizes[shard])


def load_weights(model: DecoderLM, model_dir: Path) -> None:
    """Copy every checkpoint tensor into its (possibly packed) parameter; fail on missing ones."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {model_dir}")
    params = dict(model.named_parameters())
    filled: set[str] = set()
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for hf_name in f.keys():
                name, shard = _target(hf_name)
                if name == "lm_head.weight" and model.lm_head is None:
                    continue  # tied checkpoints sometimes store the head anyway
                if name not in params:
                    raise ValueError(f"checkpoint tensor {hf_name!r} has no place in the model")
                param = params[name]
                dest = param.data if shard is None else param.data[_shard_slice(model, name, shard)]
                with torch.no_grad():
                    dest.copy_(f.get_tensor(hf_name))
                filled.add(f"{name}#{shard}")
    expected = {f"{n}#{s}" for n in params for _, s in _shards_of(n)}
    missing = sorted(expected - filled)
    if missing:
        raise ValueError(f"checkpoint in {model_dir} lacks {len(missing)} tensors, e.g. {missing[:3]}")


def _shards_of(name: str) -> list[tuple[str, int | None]]:
    """(HF name fragment, shard) of every checkpoint tensor a parameter is filled from."""
    packed = [(frag, shard) for frag, (into, shard) in _PACKED.items() if f"{into}." in name]
    return packed or [("", None)]


def checkpoint_shapes(model: DecoderLM) -> dict[str, tuple[int, ...]]:
    """HF checkpoint tensor names and shapes that `load_weights` fills this model from."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, param in model.named_parameters():
        hf = name if name.startswith("lm_head.") else "model." + name
        for frag, shard in _shards_of(name):
            if shard is None:
                shapes[hf] = tuple(param.shape)
                continue
            rows = _shard_slice(model, name, shard)
            hf_name = hf.replace(_PACKED[frag][0], frag)
            shapes[hf_name] = (rows.stop - rows.start, *param.shape[1:])
    return shapes
