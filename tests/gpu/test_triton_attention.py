"""The `triton` attention backend matches the `torch` oracle on every kind of step.

Runs on CUDA when present, otherwise on Triton's CPU interpreter (small shapes); `gpu`-marked tests
need CUDA. Tolerances: fp32 within 5e-5 (abs and rel) of the torch backend; bf16/fp16 within 1.5e-2
(abs and rel, about two bf16 ulps at |x| < 2) of the fp32 oracle run on the same rounded inputs.
The KV cache written by the triton store must equal the torch store's bit for bit.
"""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from perfloop.engine.attention.torch_backend import TorchAttention

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SCALE = 0.125


def oracle(step, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Torch-backend output (in `dtype`) and the caches it leaves, from copies of the step's tensors."""
    k_cache, v_cache = step.k_cache.clone(), step.v_cache.clone()
    up = [t.to(dtype) for t in (step.q, step.k, step.v)]
    k32, v32 = k_cache.to(dtype), v_cache.to(dtype)
    out = TorchAttention().forward(*up, k32, v32, step.meta, SCALE)
    TorchAttention().forward(step.q, step.k, step.v, k_cache, v_cache, step.meta, SCALE)
    return out, k_cache, v_cache


def assert_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    tol = 5e-5 if dtype == torch.float32 else 1.5e-2
    torch.testing.assert_close(out.float(), ref.float(), atol=tol, rtol=tol)


def run_backend(triton_kernels: ModuleType, step, num_splits: int | None = None) -> torch.Tensor:
    from perfloop.engine.attention.triton_backend import TritonAttention

    backend = TritonAttention(num_splits=num_splits)
    return backend.forward(step.q, step.k, step.v, step.k_cache, step.v_cache, step.meta, SCALE)


def check_against_oracle(triton_kernels: ModuleType, step, num_splits: int | None = None) -> None:
    ref, k_ref, v_ref = oracle(step)
    out = run_backend(triton_kernels, step, num_splits)
    assert out.shape == step.q.shape and out.dtype == step.q.dtype
    assert_close(out, ref, step.q.dtype)
    assert torch.equal(step.k_cache, k_ref) and torch.equal(step.v_cache, v_ref)


# (query heads per KV head, head_dim, block_size, dtype, decode splits; None = chosen from the shape)
DECODE_CASES = [
    (1, 32, 16, torch.float32, 1),
    (2, 128, 16, torch.bfloat16, None),
    (4, 64, 32, torch.float32, 3),
    (8, 64, 256, torch.bfloat16, 2),
    (2, 32, 64, torch.float16, 4),
    (4, 128, 128, torch.float32, None),
]


@pytest.mark.parametrize(("group", "head_dim", "block_size", "dtype", "splits"), DECODE_CASES)
def test_decode_matches_torch(triton_kernels, make_step, group, head_dim, block_size, dtype, splits) -> None:
    step = make_step([0, 5, 37, 130], [1, 1, 1, 1], 2 * group, 2, head_dim, block_size, dtype)
    check_against_oracle(triton_kernels, step, splits)


# (cached tokens per sequence, new tokens per sequence): what the scheduler produces.
PREFILL_BATCHES = {
    "no_prefix": ([0, 0], [7, 45]),
    "prefix_hit": ([32, 64], [20, 3]),
    "chunked_continuation": ([21, 50], [30, 17]),
    "mixed_decode_prefill": ([40, 0, 9, 70], [1, 33, 1, 12]),
    "decodes_leading": ([40, 90, 7, 0], [1, 1, 1, 20]),
    "decodes_trailing": ([30, 0, 17, 64], [25, 9, 1, 1]),
}
PREFILL_SHAPES = [
    (1, 64, 16, torch.float32),
    (2, 128, 32, torch.bfloat16),
    (4, 32, 16, torch.float32),
    (8, 64, 64, torch.bfloat16),
]


@pytest.mark.parametrize("batch", list(PREFILL_BATCHES))
@pytest.mark.parametrize(("group", "head_dim", "block_size", "dtype"), PREFILL_SHAPES)
def test_prefill_matches_torch(triton_kernels, make_step, batch, group, head_dim, block_size, dtype) -> None:
    cached, new = PREFILL_BATCHES[batch]
    step = make_step(cached, new, 2 * group, 2, head_dim, block_size, dtype)
    check_against_oracle(triton_kernels, step)


@pytest.mark.parametrize("group", [1, 8])
def test_prefill_small_tiles_cross_pages_and_query_tiles(triton_kernels, make_step, group) -> None:
    # 16x16 tiles: a sequence spans many query tiles and both the unmasked and the causal loop run.
    step = make_step([21, 0, 5], [40, 19, 1], group, 1, 32, 16, torch.float32)
    ref, _, _ = oracle(step)
    triton_kernels.store_kv(step.k, step.v, step.k_cache, step.v_cache, step.meta.slot_mapping)
    cfg = triton_kernels.PrefillConfig(block_m=16, block_n=16, num_warps=4, num_stages=1)
    m = step.meta
    out = triton_kernels.paged_prefill(
        step.q, step.k_cache, step.v_cache, m.block_tables, m.seq_lens, m.query_start_loc, SCALE, config=cfg
    )
    assert_close(out, ref, torch.float32)


def test_decode_uneven_splits_small_tiles(triton_kernels, make_step) -> None:
    step = make_step([3, 200, 77], [1, 1, 1], 4, 2, 64, 64, torch.float32)
    ref, _, _ = oracle(step)
    triton_kernels.store_kv(step.k, step.v, step.k_cache, step.v_cache, step.meta.slot_mapping)
    m = step.meta
    cfg = triton_kernels.DecodeConfig(block_n=16, num_warps=4, num_stages=1)
    out = triton_kernels.paged_decode(
        step.q, step.k_cache, step.v_cache, m.block_tables, m.seq_lens, SCALE, num_splits=5, config=cfg
    )
    assert_close(out, ref, torch.float32)


def test_decode_graph_bucket_serves_shorter_contexts(triton_kernels, make_step, device) -> None:
    # A graph captured for max_seq_len 4096 keeps its split count; replays with short contexts stay exact.
    step = make_step([9, 40], [1, 1], 4, 2, 32, 16, torch.float32, table_width=256, max_seq_len=4096)
    from perfloop.engine.attention.triton_backend import TritonAttention

    assert TritonAttention().decode_splits(2, step.meta.max_seq_len, 2, device) > 1
    check_against_oracle(triton_kernels, step)


def test_decode_padded_rows_are_skipped(triton_kernels, make_step, device) -> None:
    step = make_step([12, 30], [1, 1], 4, 2, 32, 16, torch.float32)
    ref, k_ref, v_ref = oracle(step)
    m = step.meta
    # Pad to a batch of 3 the way a CUDA-graph bucket does: slot -1, seq_len 0, block row of zeros.
    m.slot_mapping = torch.cat([m.slot_mapping, torch.tensor([-1], device=device)])
    m.seq_lens = torch.cat([m.seq_lens, torch.tensor([0], dtype=torch.int32, device=device)])
    m.block_tables = torch.cat([m.block_tables, torch.zeros_like(m.block_tables[:1])])
    m.query_start_loc = torch.arange(4, dtype=torch.int32, device=device)
    m.query_lens_cpu, m.seq_lens_cpu = [1, 1, 1], [*m.seq_lens_cpu, 0]
    pad = torch.ones_like(step.q[:1])
    step.q, step.k, step.v = (
        torch.cat([step.q, pad]),
        torch.cat([step.k, pad[:, :2]]),
        torch.cat([step.v, pad[:, :2]]),
    )
    for splits in (1, 3):
        k_cache, v_cache = step.k_cache.clone(), step.v_cache.clone()
        from perfloop.engine.attention.triton_backend import TritonAttention

        out = TritonAttention(num_splits=splits).forward(step.q, step.k, step.v, k_cache, v_cache, m, SCALE)
        assert_close(out[:2], ref, torch.float32)
        assert torch.equal(out[2], torch.zeros_like(out[2]))
        assert torch.equal(k_cache, k_ref) and torch.equal(v_cache, v_ref)


def test_split_choice_fills_sms_only_when_needed(triton_kernels) -> None:
    choose = triton_kernels.choose_num_splits
    assert choose(256, 8, 1024, 132) == 1  # 2,048 programs already fill 132 SMs
    assert choose(1, 8, 4096, 132) == 16  # batch-1 decode: split until ~2 waves, 256+ tokens each
    assert choose(1, 8, 300, 132) == 1  # too short to be worth a reduce
    assert choose(1, 1, 1 << 20, 132) == triton_kernels.MAX_SPLITS


def test_head_dim_must_be_power_of_two(triton_kernels, make_step) -> None:
    step = make_step([4], [1], 2, 1, 32, 16, torch.float32)
    q = torch.zeros(1, 2, 48, device=step.q.device)
    cache = torch.zeros(2, 16, 1, 48, device=step.q.device)
    with pytest.raises(ValueError, match="head_dim"):
        triton_kernels.paged_decode(q, cache, cache, step.meta.block_tables, step.meta.seq_lens, SCALE, 1)


# ----------------------------------------------------------------------------------- GPU-only shapes


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("block_size", [16, 64, 256])
def test_qwen3_shape_decode_batch(triton_kernels, make_step, block_size) -> None:
    gen = torch.Generator().manual_seed(1)
    cached = torch.randint(0, 2000, (64,), generator=gen).tolist()
    step = make_step(cached, [1] * 64, 16, 8, 128, block_size, torch.bfloat16)
    check_against_oracle(triton_kernels, step)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_llama8b_shape_batch1_long_context_splits(triton_kernels, make_step, dtype) -> None:
    step = make_step([6000], [1], 32, 8, 128, 16, dtype)
    check_against_oracle(triton_kernels, step)


@pytest.mark.gpu
@needs_cuda
def test_long_chunked_prefill_over_prefix(triton_kernels, make_step) -> None:
    step = make_step([512, 0, 1000, 77], [1024, 700, 1, 300], 16, 8, 128, 16, torch.bfloat16)
    check_against_oracle(triton_kernels, step)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("bucket", [1, 8, 64])
def test_decode_cuda_graph_replay(triton_kernels, make_step, bucket) -> None:
    """Capture once with static buffers, replay with other lengths and slots: matches the oracle."""
    from perfloop.engine.attention.triton_backend import TritonAttention

    backend = TritonAttention()
    # The captured step has the longest contexts, so its pool holds every replayed step's blocks.
    first = make_step(
        [1000] * bucket, [1] * bucket, 16, 8, 128, 16, torch.bfloat16, table_width=64, max_seq_len=1024
    )
    m = first.meta
    static = [first.q, first.k, first.v, m.slot_mapping, m.seq_lens, m.block_tables]

    def call() -> torch.Tensor:
        return backend.forward(first.q, first.k, first.v, first.k_cache, first.v_cache, m, SCALE)

    call()  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = call()

    gen = torch.Generator().manual_seed(7)
    cached = torch.randint(0, 1000, (bucket,), generator=gen).tolist()
    nxt = make_step(
        cached, [1] * bucket, 16, 8, 128, 16, torch.bfloat16, seed=3, table_width=64, max_seq_len=1024
    )
    for dst, src in zip(
        static,
        [nxt.q, nxt.k, nxt.v, nxt.meta.slot_mapping, nxt.meta.seq_lens, nxt.meta.block_tables],
        strict=True,
    ):
        dst.copy_(src)
    n = nxt.k_cache.shape[0]
    first.k_cache[:n].copy_(nxt.k_cache)
    first.v_cache[:n].copy_(nxt.v_cache)
    graph.replay()
    torch.cuda.synchronize()
    nxt.k_cache, nxt.v_cache = first.k_cache[:n].clone(), first.v_cache[:n].clone()
    ref, _, _ = oracle(nxt)
    assert_close(out, ref, torch.bfloat16)


# --------------------------------------------------------------------------------- kernel benchmark


def test_kernel_bench_counts_each_kv_row_once() -> None:
    from benchmarks.kernel_bench import DecodeShape, decode_bytes

    kv = 2 * 256 * 1024 * 8 * 128 * 2  # K and V of the shape, bf16: 1 GiB
    q_out = 2 * 256 * 16 * 128 * 2
    tables = 256 * (1024 // 16) * 4 + 256 * 4
    assert decode_bytes(DecodeShape(), block_size=16) == kv + q_out + tables


@pytest.mark.gpu
@needs_cuda
def test_kernel_bench_reports_bandwidth_share(triton_kernels, tmp_path) -> None:
    from benchmarks.kernel_bench import DecodeShape, KernelBenchResult, run_kernel_bench

    result = run_kernel_bench(DecodeShape(batch=64, context=512), block_sizes=[16, 128], sweep=False)
    assert len(result.runs) == 2 and result.copy_bandwidth_gbs > 100
    for run in result.runs:
        assert 0 < run.fraction_of_copy < 1.5
        assert run.max_abs_err < 1.5e-2
    path = tmp_path / "kernel_bench.json"
    path.write_text(result.model_dump_json())
    assert KernelBenchResult.model_validate_json(path.read_text()).best == result.best


# ------------------------------------------------------------------------------------- whole engine


@pytest.mark.slow
def test_engine_greedy_tokens_equal_torch_backend(triton_kernels, device) -> None:
    """fp32 greedy tokens of the engine are identical with either backend, through prefix-cache hits,
    chunked prefill and preemption (and decode CUDA graphs on a GPU)."""
    from perfloop.engine.attention.triton_backend import TritonAttention
    from perfloop.engine.llm import LLM
    from perfloop.engine.sampling_params import SamplingParams

    gen = torch.Generator().manual_seed(0)
    shared = torch.randint(0, 500, (40,), generator=gen).tolist()
    prompts = [shared + torch.randint(0, 500, (n,), generator=gen).tolist() for n in (3, 17, 30)]
    params = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    config = dict(num_kv_blocks=11, max_num_batched_tokens=24, block_size=8, dtype="float32")
    expected = [
        o.output_token_ids
        for o in LLM("preset:tiny-qwen3", attention_backend="torch", **config).generate(prompts, params)
    ]
    if device.type == "cuda":
        llm = LLM("preset:tiny-qwen3", attention_backend="triton", **config)
    else:  # get_backend only hands out triton on CUDA; the interpreter runs the same kernels
        llm = LLM("preset:tiny-qwen3", attention_backend="torch", **config)
        llm.engine.runner.backend = TritonAttention()
    assert [o.output_token_ids for o in llm.generate(prompts, params)] == expected
    stats = llm.engine.stats()
    assert stats.prefix_cache_hits > 0 and stats.num_prefill_chunks > 0 and stats.num_preemptions > 0
