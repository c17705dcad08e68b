"""The one-token GEMV kernels (perfloop.engine.kernels.gemv) against an fp32 reference, and the decoder's
one-token path against its batched path.

The fused path keeps the normalised input and SiLU in fp32 where torch rounds them to bf16, so it is
compared with an fp32 computation: the output may differ by its own final rounding plus the fp32
summation order, i.e. within 2 ulps of the output dtype relative to the largest output.
On CPU the kernels run in Triton's interpreter (small shapes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from perfloop.engine.llm import LLM
from perfloop.engine.models import decoder, layers
from perfloop.engine.sampling_params import SamplingParams
from perfloop.engine.scheduler import ScheduledBatch
from perfloop.engine.sequence import Sequence

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")


@pytest.fixture(scope="module")
def gemv(interpreted: Callable[[ModuleType], Iterator[ModuleType]]) -> Iterator[ModuleType]:
    from perfloop.engine.kernels import gemv as module

    yield from interpreted(module)


def rand(*shape: int, dtype: torch.dtype, seed: int, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen) * scale).to(dtype).to(DEVICE)


def reference(
    x: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None,
    norm: tuple[torch.Tensor, float] | None,
    silu: bool,
    residual: torch.Tensor | None,
) -> torch.Tensor:
    """The same math in fp32: RMSNorm / silu(gate) * up on the input, bias and residual on the output."""
    h = x.float()
    if silu:
        gate, up = h.chunk(2, dim=-1)
        h = F.silu(gate) * up
    if norm is not None:
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm[1]) * norm[0].float()
    y = F.linear(h, w.float(), None if bias is None else bias.float())
    return y if residual is None else y + residual.float()


def assert_close_to(out: torch.Tensor, ref: torch.Tensor) -> None:
    eps = torch.finfo(out.dtype).eps
    err = (out.float() - ref).abs().max().item()
    assert err <= 2 * eps * ref.abs().max().item(), f"max error {err} for outputs up to {ref.abs().max()}"


# (N, K): tiles that divide both, a ragged N and K, a K below one 16-wide vector, a long K loop.
SHAPES = [(64, 128), (40, 96), (24, 40), (32, 2048)]
VARIANTS = {
    "plain": {},
    "bias": {"bias": True},
    "norm": {"norm": True},
    "norm+bias": {"norm": True, "bias": True},
    "silu+residual": {"silu": True, "residual": True},
    "residual": {"residual": True},
}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("n", "k"), SHAPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_linear_matches_fp32_reference(gemv, dtype, n, k, variant) -> None:
    opts = VARIANTS[variant]
    silu = opts.get("silu", False)
    x = rand(1, 2 * k if silu else k, dtype=dtype, seed=1, scale=2.0)
    w = rand(n, k, dtype=dtype, seed=2, scale=k**-0.5)
    bias = rand(n, dtype=dtype, seed=3) if opts.get("bias") else None
    norm = (rand(k, dtype=dtype, seed=4, scale=0.3) + 1, 1e-6) if opts.get("norm") else None
    residual = rand(1, n, dtype=dtype, seed=5) if opts.get("residual") else None
    out = gemv.linear(x, w, bias, norm=norm, silu=silu, residual=residual)
    assert out.shape == (1, n) and out.dtype == dtype
    assert_close_to(out, reference(x, w, bias, norm, silu, residual))


@pytest.mark.parametrize("cfg", [(4, 64, 4, 1), (16, 32, 2, 2), (32, 128, 8, 3)])
def test_every_tile_shape_gives_the_same_result(gemv, cfg) -> None:
    x = rand(1, 256, dtype=torch.bfloat16, seed=6)
    w = rand(96, 256, dtype=torch.bfloat16, seed=7, scale=1 / 16)
    out = gemv.linear(x, w, cfg=gemv.Config(*cfg))
    assert_close_to(out, reference(x, w, None, None, False, None))


def test_config_tiles_divide_the_model_shapes(gemv) -> None:
    # Llama-3.1-8B and Qwen3-0.6B projections: unmasked tiles everywhere.
    for n, k in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (128256, 4096), (1024, 3072)]:
        cfg = gemv.config(n, k)
        assert n % cfg.block_n == 0 and k % cfg.block_k == 0, (n, k, cfg)


def test_linear_rejects_mismatched_shapes(gemv) -> None:
    w = rand(8, 32, dtype=torch.bfloat16, seed=8)
    with pytest.raises(ValueError, match="does not fit weight"):
        gemv.linear(rand(1, 16, dtype=torch.bfloat16, seed=9), w)
    with pytest.raises(ValueError, match="does not fit weight"):
        gemv.linear(rand(1, 32, dtype=torch.bfloat16, seed=9), w, silu=True)


def test_gemv_ops_only_for_one_half_precision_token_on_cuda(monkeypatch) -> None:
    one = torch.zeros(1, 8, dtype=torch.bfloat16, device=DEVICE)
    assert (layers.gemv_ops(one) is not None) == CUDA
    assert layers.gemv_ops(torch.zeros(2, 8, dtype=torch.bfloat16, device=DEVICE)) is None
    assert layers.gemv_ops(torch.zeros(1, 8, device=DEVICE)) is None
    monkeypatch.setenv("PERFLOOP_GEMV", "0")
    assert layers.gemv_ops(one) is None


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_pdl_is_used_on_hopper(gemv) -> None:
    # A silent fallback (an import or option missing in this triton) would cost ~3 % at batch 1.
    hopper = torch.cuda.get_device_capability() >= (9, 0)
    assert gemv.pdl_supported(torch.device("cuda")) == hopper


def _decode_logits(llm: LLM, prompt: list[int]) -> torch.Tensor:
    """Prefill `prompt` (batched path), then the logits of one decode token (one-token path)."""
    runner = llm.engine.runner
    seq = Sequence("gemv", prompt, SamplingParams())
    llm.engine.blocks.allocate(seq, seq.num_tokens)
    runner.logits_for(ScheduledBatch([seq], [seq.num_tokens]))
    seq.token_ids.append(7)
    seq.num_computed = len(prompt)
    llm.engine.blocks.allocate(seq, 1)
    return runner.logits_for(ScheduledBatch([seq], [1]))


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-qwen2", "tiny-qwen3"])
def test_decoder_one_token_path_matches_batched_path(gemv, monkeypatch, preset) -> None:
    llm = LLM(f"preset:{preset}", dtype="bfloat16", device=DEVICE.type, enforce_eager=True, num_kv_blocks=16)
    prompt = list(range(3, 40))
    monkeypatch.setattr(decoder, "gemv_ops", lambda x: gemv if x.dim() == 2 and x.shape[0] == 1 else None)
    fused = _decode_logits(llm, prompt)
    monkeypatch.setattr(decoder, "gemv_ops", lambda x: None)
    unfused = _decode_logits(llm, prompt)
    # bf16 activations rounded at different points across a few layers: a few bf16 ulps of the logits.
    scale = unfused.abs().max().item()
    assert (fused - unfused).abs().max().item() <= 0.05 * scale
    assert fused.argmax(-1).item() == unfused.argmax(-1).item()
