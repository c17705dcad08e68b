"""Write an HF Llama directory as a GGUF file of a chosen precision, for llama.cpp peers.

The same weights for every side: perfloop's engine and `transformers serve` read the HF
directory, llama.cpp reads this file, written from the very same tensors. Metadata
(tokenizer, chat template, hyper-parameters) is copied from a reference GGUF of the same
model (for SmolLM2, the packaged Q4_1 file). Q and K are permuted the way llama.cpp's own
`convert_hf_to_gguf.py` does, so the file's values match the reference file's layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

GGUFPrecision = Literal["f32", "f16", "bf16"]
_FILE_TYPE = {"f32": 0, "f16": 1, "bf16": 32}  # llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_BF16
_SKIP_KEYS = ("GGUF.", "general.architecture", "general.file_type", "general.quantization_version")
_LAYER_NAMES = (
    {f"self_attn.{x}_proj": f"attn_{y}" for x, y in (("q", "q"), ("k", "k"), ("v", "v"), ("o", "output"))}
    | {f"mlp.{x}_proj": f"ffn_{x}" for x in ("gate", "up", "down")}
    | {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
)


def gguf_name(hf_name: str) -> str:
    """llama.cpp's tensor name for an HF Llama parameter name."""
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    if hf_name in top:
        return top[hf_name]
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.removeprefix("model.layers.").split(".", 1)
    module, suffix = parts[1].rsplit(".", 1)
    return f"blk.{parts[0]}.{_LAYER_NAMES[module]}.{suffix}"


def permute_qk(weight: Any, heads: int) -> Any:
    """HF's rotate-half Q/K layout to llama.cpp's interleaved one (as convert_hf_to_gguf.py does)."""
    split = weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
    return split.swapaxes(1, 2).reshape(weight.shape)


def export_gguf(model_dir: Path, reference: Path, out: Path, precision: GGUFPrecision = "f32") -> Path:
    """Write `model_dir`'s safetensors as `out` (GGUF, `precision`), metadata from `reference`."""
    import json

    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    if precision not in _FILE_TYPE:
        raise ValueError(f"precision: expected one of {', '.join(_FILE_TYPE)}, got {precision!r}")
    config = json.loads((model_dir / "config.json").read_text())
    reader = gguf.GGUFReader(str(reference))
    arch = str(reader.fields["general.architecture"].contents())
    tmp = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), arch)
    for key, field in reader.fields.items():
        if not key.startswith(_SKIP_KEYS):
            sub = field.types[1] if len(field.types) > 1 else None
            writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
    writer.add_file_type(_FILE_TYPE[precision])
    tensors = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        tensors |= load_file(str(file))
    for name, value in tensors.items():
        arr = value.astype(np.float32)
        if name.endswith("self_attn.q_proj.weight"):
            arr = permute_qk(arr, config["num_attention_heads"])
        elif name.endswith("self_attn.k_proj.weight"):
            arr = permute_qk(arr, config["num_key_value_heads"])
        _add_tensor(writer, gguf_name(name), arr, precision if arr.ndim > 1 else "f32")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.rename(out)
    return out


def _add_tensor(writer: Any, name: str, arr: Any, precision: str) -> None:
    import gguf
    import numpy as np

    if precision == "f32":
        writer.add_tensor(name, np.ascontiguousarray(arr))
    elif precision == "f16":
        writer.add_tensor(name, np.ascontiguousarray(arr.astype(np.float16)))
    else:  # bf16 has no numpy dtype: gguf packs it as raw bytes
        packed = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.BF16)
        writer.add_tensor(name, packed, raw_dtype=gguf.GGMLQuantizationType.BF16)
