"""Shared fixtures for the Triton attention tests: device choice, interpreter mode, random paged steps.

Without CUDA the kernels run on Triton's CPU interpreter. TRITON_INTERPRET is read when each
`@triton.jit` function is decorated, Triton's own library functions included, so it must be set
before triton is first imported: this conftest sets it at collection time (process-wide; harmless on
CPU, where nothing else can run Triton kernels).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest
import torch

from perfloop.engine.attention.metadata import AttentionMetadata

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _rtne_fp_trunc(original):  # noqa: ANN001, ANN202 - wraps an interpreter method
    import numpy as np
    import triton.language as tl
    from triton.runtime.interpreter import TensorHandle

    def trunc(self, src, dst_type):  # noqa: ANN001, ANN202
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            rounded = torch.from_numpy(np.ascontiguousarray(src.data, dtype=np.float32)).bfloat16()
            return TensorHandle(rounded.view(torch.int16).numpy().view(np.uint16), dst_type.scalar)
        return original(self, src, dst_type)

    return trunc


def _interpreted(module: ModuleType) -> Iterator[ModuleType]:
    """Yield a Triton kernel module: as is on CUDA; on CPU reloaded in interpreter mode, with the
    interpreter's fp32 -> bf16 casts (which truncate) made to round to nearest even like the GPU."""
    pytest.importorskip("triton", reason="triton is not installed")
    if torch.cuda.is_available():
        yield module
        return
    from triton.runtime.interpreter import InterpreterBuilder

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "1")
        mp.setattr(InterpreterBuilder, "create_fp_trunc", _rtne_fp_trunc(InterpreterBuilder.create_fp_trunc))
        yield importlib.reload(module)
    importlib.reload(module)


@pytest.fixture(scope="session")
def interpreted() -> Callable[[ModuleType], Iterator[ModuleType]]:
    """For module fixtures: `yield from interpreted(module)` gives the kernels runnable here."""
    return _interpreted


@dataclass
class PagedStep:
    """One attention call's inputs: flattened q/k/v of the new tokens, a filled paged cache, metadata."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    meta: AttentionMetadata


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="session")
def triton_kernels() -> ModuleType:
    """The kernels module (interpreted on CPU); skips without triton or if it was imported too early."""
    triton = pytest.importorskip("triton", reason="triton is not installed")
    interpreted = type(triton.language.standard.cdiv).__name__ == "InterpretedFunction"
    if not torch.cuda.is_available() and not interpreted:
        pytest.skip("triton was imported before TRITON_INTERPRET=1 was set; run `pytest tests/gpu` alone")
    from perfloop.engine.kernels import paged_attention as triton_kernels

    return triton_kernels


@pytest.fixture(scope="session")
def make_step(device: torch.device) -> Callable[..., PagedStep]:
    """Factory for a random paged step: `cached[i]` tokens already in the cache, `new[i]` added now."""

    def build(
        cached: list[int],
        new: list[int],
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        block_size: int,
        dtype: torch.dtype,
        seed: int = 0,
        table_width: int | None = None,
        max_seq_len: int | None = None,
    ) -> PagedStep:
        gen = torch.Generator().manual_seed(seed)
        seq_lens = [c + n for c, n in zip(cached, new, strict=True)]
        blocks_per_seq = [-(-s // block_size) for s in seq_lens]
        width = table_width or max(max(blocks_per_seq), 1)
        num_blocks = sum(blocks_per_seq) + 4
        # Shuffled block ids so pages of one sequence are scattered (block 0 stays as the padding target).
        ids = (torch.randperm(num_blocks - 1, generator=gen) + 1).tolist()
        table = torch.zeros(len(seq_lens), width, dtype=torch.int32)
        slots: list[int] = []
        for i, (c, n) in enumerate(zip(cached, new, strict=True)):
            row = [ids.pop() for _ in range(blocks_per_seq[i])]
            table[i, : len(row)] = torch.tensor(row, dtype=torch.int32)
            slots += [row[p // block_size] * block_size + p % block_size for p in range(c, c + n)]

        def rand(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen).to(dtype).to(device)

        total = sum(new)
        starts = [0]
        for n in new:
            starts.append(starts[-1] + n)
        meta = AttentionMetadata(
            slot_mapping=torch.tensor(slots, dtype=torch.int64, device=device),
            query_start_loc=torch.tensor(starts, dtype=torch.int32, device=device),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=device),
            block_tables=table.to(device),
            query_lens_cpu=list(new),
            seq_lens_cpu=seq_lens,
            max_query_len=max(new),
            max_seq_len=max_seq_len or max(seq_lens),
            block_size=block_size,
        )
        return PagedStep(
            q=rand(total, num_heads, head_dim),
            k=rand(total, num_kv_heads, head_dim),
            v=rand(total, num_kv_heads, head_dim),
            k_cache=rand(num_blocks, block_size, num_kv_heads, head_dim),
            v_cache=rand(num_blocks, block_size, num_kv_heads, head_dim),
            meta=meta,
        )

    return build
