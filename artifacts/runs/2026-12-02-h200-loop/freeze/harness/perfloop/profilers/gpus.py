"""Peak numbers of the GPUs the roofline knows, each with where it comes from."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field


class GpuSpec(BaseModel):
    """Dense peaks used for time floors; a custom SPEC.json holds the same fields."""

    name: str
    memory_bandwidth_tbs: float = Field(gt=0, description="HBM bandwidth, TB/s (1e12 bytes/s).")
    bf16_tflops: float = Field(gt=0, description="Dense (no sparsity) BF16 tensor-core TFLOPS.")
    memory_gb: float = Field(gt=0, description="Device memory, GB.")
    source: str = Field("", description="Where these numbers come from.")


GPUS: dict[str, GpuSpec] = {
    "h200": GpuSpec(
        name="NVIDIA H200 SXM",
        memory_bandwidth_tbs=4.8,
        bf16_tflops=989.0,
        memory_gb=141.0,
        source="NVIDIA H200 datasheet: 4.8 TB/s HBM3e, 141 GB; BF16 1,979 TFLOPS with sparsity = ~989 dense",
    ),
    "h100": GpuSpec(
        name="NVIDIA H100 SXM",
        memory_bandwidth_tbs=3.35,
        bf16_tflops=989.0,
        memory_gb=80.0,
        source="NVIDIA H100 datasheet (SXM5): 3.35 TB/s HBM3, 80 GB; BF16 1,979 TFLOPS sparse = ~989 dense",
    ),
    "a100": GpuSpec(
        name="NVIDIA A100 SXM 80GB",
        memory_bandwidth_tbs=2.039,
        bf16_tflops=312.0,
        memory_gb=80.0,
        source="NVIDIA A100 datasheet (80GB SXM): 2,039 GB/s HBM2e; BF16 312 TFLOPS dense",
    ),
}


def gpu_spec(name_or_path: str) -> GpuSpec:
    """A known GPU by short name (h200, h100, a100) or a SPEC.json file with GpuSpec's fields."""
    key = name_or_path.lower()
    if key in GPUS:
        return GPUS[key]
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        return GpuSpec.model_validate(json.loads(path.read_text()))
    raise ValueError(f"gpu: unknown GPU {name_or_path!r}; use one of {', '.join(GPUS)} or a SPEC.json path")
