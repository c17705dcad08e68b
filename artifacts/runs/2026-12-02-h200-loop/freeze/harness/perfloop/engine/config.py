"""Engine configuration: one pydantic record shared by the CLI, the server and the benchmark.

It is also the one declaration of the engine's command-line flags: every field but `seed` is
the flag `--field-name` (booleans `--name/--no-name`), with the field's default and description.
`cli_options.engine_flags` turns the fields into Typer options; `to_flags` writes a config back
as flags, `from_flags` reads them (through the same options, so the two never disagree).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

# Fields that are not flags: `seed` seeds weights-independent randomness; commands that start an
# engine have their own --seed (sampling or workload), so it is set in code or config files only.
NOT_FLAGS = frozenset({"seed"})


class EngineConfig(BaseModel):
    """Everything that shapes how the bundled engine runs a model."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Model directory or preset:NAME.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = float32 on CPU, bfloat16 on CUDA."
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    block_size: int = Field(16, ge=1, description="Tokens per KV-cache block.")
    num_kv_blocks: int | None = Field(None, ge=1, description="KV pool size in blocks; default from memory.")
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
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads of the engine process; default: half the usable CPUs, "
        "at most what is set already (see perfloop.engine.threads).",
    )
    seed: int = Field(0, description="Seed for weights-independent randomness.")

    def to_flags(self) -> list[str]:
        """Flag words that rebuild this config: `--model M`, then every flag off its default."""
        words = ["--model", self.model]
        for name, info in flag_fields().items():
            value = getattr(self, name)
            if name == "model" or value == info.default:
                continue
            flag = flag_name(name)
            if isinstance(value, bool):
                words.append(flag if value else "--no-" + flag[2:])
            else:
                words += [flag, str(value)]
        return words

    @classmethod
    def from_flags(cls, words: Sequence[str]) -> EngineConfig:
        """The config these flag words describe; a bad word raises ValueError naming it."""
        from perfloop.engine.cli_options import parse_flags

        return parse_flags(list(words))


def flag_fields() -> dict[str, FieldInfo]:
    """EngineConfig's fields that are command-line flags, in declaration order."""
    return {n: f for n, f in EngineConfig.model_fields.items() if n not in NOT_FLAGS}


def flag_name(field: str) -> str:
    """`max_num_seqs` -> `--max-num-seqs`."""
    return "--" + field.replace("_", "-")
