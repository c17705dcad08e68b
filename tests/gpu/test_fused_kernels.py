"""The fused decoder kernels (engine.kernels.fused) match the torch layers in engine.models.layers.

Runs on CUDA when present, otherwise on Triton's CPU interpreter (small shapes). Tolerances: fp32
within 1e-5 (rel and abs); bf16/fp16 equal or one ulp apart element-wise, except at most one element
in a thousand: when an intermediate rounding (the normalised value before the weight mul, silu before
the mul) lands on the other side of a tie, the next ops widen that one ulp of the intermediate, and
RoPE's cancellation (x*cos + rot*sin near 0) makes it many ulps of a small output. Those rare
elements must stay within 2 * eps * max|ref|. On an H200 the kernels match torch bit for bit but for
such flips (a few per million elements of the norms; silu and rope alone are exact).

On CPU the module is reloaded in interpreter mode (see the `interpreted` fixture in conftest).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from perfloop.engine.models import layers
from perfloop.engine.models.layers import RMSNorm, RotaryEmbedding

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(scope="module")
def fused(interpreted: Callable[[ModuleType], Iterator[ModuleType]]) -> Iterator[ModuleType]:
    """perfloop.engine.kernels.fused, on CPU reloaded in interpreter mode."""
    from perfloop.engine.kernels import fused as module

    yield from interpreted(module)


@pytest.fixture(autouse=True)
def torch_layers() -> Iterator[None]:
    """The layers' own torch code as the reference: layers.py dispatches to the fused kernels on CUDA."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(layers, "fused_ops", lambda x: None)
        yield


def rand(*shape: int, dtype: torch.dtype, seed: int, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen) * scale).to(dtype).to(DEVICE)


def ordered_bits(x: torch.Tensor) -> torch.Tensor:
    """16-bit floats as integers whose difference counts ulps (sign-magnitude to two's complement)."""
    bits = x.view(torch.int16).int()
    mag = bits & 0x7FFF
    return torch.where(bits < 0, -mag, mag)


def assert_matches(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype
    if ref.dtype == torch.float32:
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        return
    ulps = (ordered_bits(out) - ordered_bits(ref)).abs()
    widened = ulps > 1
    count = int(widened.sum())
    assert count * 1000 <= ulps.numel(), f"{count} of {ulps.numel()} elements over one ulp off"
    if count:
        # A flipped intermediate is off by one ulp of its own (operand-sized) value.
        atol = 2 * torch.finfo(ref.dtype).eps * float(ref.abs().max())
        assert float((out - ref).float().abs()[widened].max()) <= atol


def norm_module(size: int, dtype: torch.dtype, seed: int) -> RMSNorm:
    norm = RMSNorm(size, 1e-6).to(DEVICE, dtype)
    with torch.no_grad():
        norm.weight.copy_(rand(size, dtype=dtype, seed=seed, scale=0.5) + 1)
    return norm


# (rows, hidden): empty, one row, a non-power-of-two width, several rows per program, the widest.
NORM_SHAPES = [(0, 128), (1, 128), (5, 1000), (37, 256), (3, 8192)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("rows", "hidden"), NORM_SHAPES)
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm_matches_layers(fused, dtype, rows, hidden, with_residual) -> None:
    norm = norm_module(hidden, dtype, seed=1)
    x = rand(rows, hidden, dtype=dtype, seed=2, scale=3.0)
    residual = rand(rows, hidden, dtype=dtype, seed=3) if with_residual else None
    with torch.no_grad():
        ref = norm(x, residual)
    got = fused.rms_norm(x, norm.weight, norm.eps, residual)
    if with_residual:
        assert_matches(got[0], ref[0])
        assert torch.equal(got[1], ref[1])  # the residual sum is one rounding: bit-exact
    else:
        assert_matches(got, ref)


def test_rms_norm_reads_strided_and_3d_inputs(fused) -> None:
    norm = norm_module(64, torch.bfloat16, seed=4)
    wide = rand(9, 200, dtype=torch.bfloat16, seed=5)
    x = wide[:, 10:74]  # row stride 200
    with torch.no_grad():
        assert_matches(fused.rms_norm(x, norm.weight, norm.eps), norm(x))
        heads = rand(4, 3, 64, dtype=torch.bfloat16, seed=6)
        assert_matches(fused.rms_norm(heads, norm.weight, norm.eps), norm(heads))


def test_rms_norm_rejects_mismatched_weight(fused) -> None:
    x = rand(2, 64, dtype=torch.float32, seed=7)
    with pytest.raises(ValueError, match="hidden size 64"):
        fused.rms_norm(x, torch.ones(32, device=DEVICE), 1e-6)


def qk_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    norms: tuple[RMSNorm, RMSNorm] | None,
    rope: RotaryEmbedding,
    positions: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What decoder.Attention does between the QKV split and attention."""
    with torch.no_grad():
        if norms is not None:
            q, k = norms[0](q), norms[1](k)
        return rope(positions, q, k)


# (tokens, q heads, kv heads, head_dim): Qwen3-0.6B's head layout, MHA, odd head counts, Llama-ish GQA.
QK_SHAPES = [(0, 16, 8, 128), (1, 16, 8, 128), (7, 4, 4, 64), (5, 6, 2, 32), (3, 32, 8, 128)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("tokens", "hq", "hkv", "head_dim"), QK_SHAPES)
@pytest.mark.parametrize("with_norm", [True, False])
def test_qk_norm_rope_matches_layers(fused, dtype, tokens, hq, hkv, head_dim, with_norm) -> None:
    max_pos = 64
    rope = RotaryEmbedding(head_dim, max_pos, 1_000_000.0, None).to(DEVICE)
    # q and k are views into one packed QKV output, as in decoder.Attention.
    qkv = rand(tokens, (hq + 2 * hkv) * head_dim, dtype=dtype, seed=8, scale=2.0)
    q, k, _ = qkv.split([hq * head_dim, hkv * head_dim, hkv * head_dim], dim=-1)
    q, k = q.view(tokens, hq, head_dim), k.view(tokens, hkv, head_dim)
    positions = torch.randint(0, max_pos, (tokens,), generator=torch.Generator().manual_seed(9)).to(DEVICE)
    norms = (
        (norm_module(head_dim, dtype, seed=10), norm_module(head_dim, dtype, seed=11)) if with_norm else None
    )
    ref_q, ref_k = qk_reference(q, k, norms, rope, positions)
    weights = (norms[0].weight, norms[1].weight) if norms else (None, None)
    got_q, got_k = fused.qk_norm_rope(q, k, *weights, 1e-6, rope.cos, rope.sin, positions)
    assert_matches(got_q, ref_q)
    assert_matches(got_k, ref_k)


def test_qk_norm_rope_follows_llama3_scaled_tables(fused) -> None:
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}  # fmt: skip
    rope = RotaryEmbedding(64, 512, 500_000.0, scaling).to(DEVICE)
    q = rand(6, 4, 64, dtype=torch.bfloat16, seed=12)
    k = rand(6, 2, 64, dtype=torch.bfloat16, seed=13)
    positions = torch.tensor([0, 1, 63, 64, 300, 511], device=DEVICE)
    ref_q, ref_k = qk_reference(q, k, None, rope, positions)
    got_q, got_k = fused.qk_norm_rope(q, k, None, None, 1e-6, rope.cos, rope.sin, positions)
    assert_matches(got_q, ref_q)
    assert_matches(got_k, ref_k)


# (tokens, inter): empty, one token, a partial block, several blocks per row with a ragged tail.
MLP_SHAPES = [(0, 96), (1, 96), (9, 1536), (4, 3000)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("tokens", "inter"), MLP_SHAPES)
def test_silu_and_mul_matches_layers(fused, dtype, tokens, inter) -> None:
    gate_up = rand(tokens, 2 * inter, dtype=dtype, seed=14, scale=4.0)
    gate, up = gate_up.chunk(2, dim=-1)
    assert_matches(fused.silu_and_mul(gate_up), F.silu(gate) * up)


@needs_cuda
@pytest.mark.gpu
def test_large_shapes_match_on_gpu(fused) -> None:
    dtype = torch.bfloat16
    norm = norm_module(4096, dtype, seed=15)
    x, residual = rand(16384, 4096, dtype=dtype, seed=16), rand(16384, 4096, dtype=dtype, seed=17)
    with torch.no_grad():
        ref, ref_res = norm(x, residual)
    got, got_res = fused.rms_norm(x, norm.weight, norm.eps, residual)
    assert_matches(got, ref)
    assert torch.equal(got_res, ref_res)
    gate_up = rand(16384, 2 * 3072, dtype=dtype, seed=18, scale=4.0)
    gate, up = gate_up.chunk(2, dim=-1)
    assert_matches(fused.silu_and_mul(gate_up), F.silu(gate) * up)
    rope = RotaryEmbedding(128, 40960, 1_000_000.0, None).to(DEVICE)
    q, k = rand(16384, 16, 128, dtype=dtype, seed=19), rand(16384, 8, 128, dtype=dtype, seed=20)
    positions = torch.randint(0, 40960, (16384,), device=DEVICE)
    norms = (norm_module(128, dtype, seed=21), norm_module(128, dtype, seed=22))
    ref_q, ref_k = qk_reference(q, k, norms, rope, positions)
    got_q, got_k = fused.qk_norm_rope(
        q, k, norms[0].weight, norms[1].weight, 1e-6, rope.cos, rope.sin, positions
    )
    assert_matches(got_q, ref_q)
    assert_matches(got_k, ref_k)


@needs_cuda
@pytest.mark.gpu
def test_kernels_replay_inside_a_cuda_graph(fused) -> None:
    dtype, tokens = torch.bfloat16, 256
    norm, q_norm, k_norm = (norm_module(n, dtype, seed=s) for n, s in ((1024, 23), (128, 24), (128, 25)))
    rope = RotaryEmbedding(128, 4096, 1_000_000.0, None).to(DEVICE)
    x = rand(tokens, 1024, dtype=dtype, seed=26)
    residual = rand(tokens, 1024, dtype=dtype, seed=27)
    qkv = rand(tokens, 32 * 128, dtype=dtype, seed=28)
    gate_up = rand(tokens, 2 * 3072, dtype=dtype, seed=29)
    positions = torch.zeros(tokens, dtype=torch.int64, device=DEVICE)

    def step() -> tuple[torch.Tensor, ...]:
        q, k, _ = qkv.split([16 * 128, 8 * 128, 8 * 128], dim=-1)
        h, res = fused.rms_norm(x, norm.weight, norm.eps, residual)
        q, k = fused.qk_norm_rope(
            q.view(tokens, 16, 128), k.view(tokens, 8, 128), q_norm.weight, k_norm.weight, 1e-6,
            rope.cos, rope.sin, positions,
        )  # fmt: skip
        return h, res, q, k, fused.silu_and_mul(gate_up)

    step()  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = step()
    for seed in (30, 31):  # new inputs copied into the static buffers, then replay
        for i, buf in enumerate((x, residual, qkv, gate_up)):
            buf.copy_(rand(*buf.shape, dtype=dtype, seed=seed * 10 + i))
        positions.copy_(torch.randint(0, 4096, (tokens,), device=DEVICE))
        graph.replay()
        for got, want in zip(outs, step(), strict=True):
            assert torch.equal(got, want)


def test_available_only_on_cuda(fused) -> None:
    assert not fused.available("cpu")
    assert fused.available("cuda") == CUDA
