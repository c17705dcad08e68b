"""Engine configuration: one pydantic record shared by the CLI, the server and the benchmark."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EngineConfig(BaseModel):
    """Everything that shapes how the bundled engine runs a model."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Local HF model directory or preset:NAME.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = float32 on CPU, bfloat16 on CUDA."
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    block_size: int = Field(16, ge=1, description="Tokens per KV-cache block.")
    num_kv_blocks: int | None = Field(None, ge=1, description="KV pool size; default from memory.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="GPU memory share for the engine.")
    max_num_seqs: int = Field(256, ge=1, description="Most sequences in one step.")
    max_num_batched_tokens: int = Field(2048, ge=1, description="Token budget of one step.")
    max_model_len: int | None = Field(None, ge=1, description="Context limit; default from the model.")
    enable_prefix_caching: bool = Field(True, description="Reuse KV blocks of shared prefixes.")
    enable_chunked_prefill: bool = Field(True, description="Split long prompts across steps.")
    attention_backend: Literal["auto", "torch", "triton"] = Field(
        "auto", description="auto = triton on CUDA."
    )
    enforce_eager: bool = Field(False, description="Disable decode CUDA graphs.")
    seed: int = Field(0, description="Seed for weights-independent randomness.")
