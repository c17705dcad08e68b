"""The registry of model families the engine runs: one named entry per Hugging Face architecture.

Every family is the same pre-norm decoder (`decoder.py`); an entry names the switches its
architecture turns on. Everything else reads them from here: `ModelConfig.from_hf` (which
architectures load), the decoder's modules, the checkpoint names random presets are written with
(`presets.weight_shapes`, derived from the decoder) and the roofline's operator costs. Adding a
family whose structure these switches describe is one `register_family` call.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFamily:
    """One decoder-only architecture and the structural switches it turns on."""

    name: str  # HF `model_type`, e.g. "qwen3"
    architecture: str  # HF `architectures[0]`, e.g. "Qwen3ForCausalLM"
    qkv_bias: bool = False  # biases on the q/k/v projections
    qk_norm: bool = False  # per-head RMSNorm of q and k before rotary


FAMILIES: dict[str, ModelFamily] = {}  # by architecture


def register_family(family: ModelFamily) -> ModelFamily:
    """Make the engine load `family.architecture` checkpoints; returns the family."""
    FAMILIES[family.architecture] = family
    return family


def family_of(architecture: str) -> ModelFamily:
    """The registered family of an HF architecture name; unknown names raise ValueError naming them."""
    if architecture not in FAMILIES:
        known = ", ".join(FAMILIES)
        raise ValueError(f"unsupported architecture {architecture!r}; perfloop's engine supports {known}")
    return FAMILIES[architecture]


register_family(ModelFamily("llama", "LlamaForCausalLM"))
register_family(ModelFamily("qwen2", "Qwen2ForCausalLM", qkv_bias=True))
register_family(ModelFamily("qwen3", "Qwen3ForCausalLM", qk_norm=True))
