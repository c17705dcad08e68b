"""Kernel (or CPU op) name -> category, by a fixed, ordered keyword list.

The first category with a matching keyword wins, so order matters: communication and memory
movement are checked before compute, and `elementwise` only catches what nothing else claimed.
Keywords are matched as lowercase substrings of the kernel name.
"""

from __future__ import annotations

from functools import lru_cache

CATEGORY_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "communication",
        (
            "nccl",
            "allreduce",
            "all_reduce",
            "allgather",
            "all_gather",
            "reduce_scatter",
            "alltoall",
            "c10d::",
        ),
    ),
    (
        "memory",
        (
            "memcpy",
            "memset",
            "copy_",
            "copy_kernel",
            "aten::copy",
            "aten::fill",
            "fill_kernel",
            "aten::zero",
            "aten::cat",
            "catarraybatched",
            "aten::clone",
            "aten::contiguous",
            "aten::_to_copy",
            "aten::index_put",
            "aten::index_copy",
            "reshape_and_cache",
            "store_kv",
            "kv_store",
        ),
    ),
    (
        "attention",
        (
            "attention",
            "attn",
            "flash_fwd",
            "flash",
            "fmha",
            "sdpa",
            "scaled_dot_product",
            "paged",
            "mha_",
            "mla_",
        ),
    ),
    (
        "gemm",
        (
            "gemm",
            "gemv",
            "nvjet",
            "cutlass",
            "cublas",
            "xmma",
            "wgmma",
            "splitk",
            "aten::mm",
            "aten::addmm",
            "aten::bmm",
            "aten::baddbmm",
            "aten::matmul",
            "aten::linear",
            "mkldnn_matmul",
        ),
    ),
    ("norm", ("rmsnorm", "rms_norm", "layernorm", "layer_norm", "group_norm", "batch_norm")),
    ("rope", ("rope", "rotary", "pos_encoding")),
    ("activation", ("silu", "gelu", "relu", "swiglu", "act_and_mul", "sigmoid", "tanh")),
    ("softmax", ("softmax",)),
    ("quantize", ("quant", "fp8", "int8", "int4", "e4m3", "marlin")),
    (
        "sampling",
        (
            "sampl",
            "topk",
            "top_k",
            "top_p",
            "argmax",
            "multinomial",
            "exponential",
            "argsort",
            "aten::sort",
            "sort_kernel",
            "radixsort",
            "cumsum",
            "philox",
            "uniform",
        ),
    ),
    (
        "elementwise",
        (
            "elementwise",
            "vectorized",
            "unrolled",
            "reduce_kernel",
            "aten::add",
            "aten::mul",
            "aten::sub",
            "aten::div",
            "aten::pow",
            "aten::rsqrt",
            "aten::exp",
            "aten::neg",
            "aten::where",
            "aten::mean",
            "aten::sum",
            "aten::max",
            "aten::embedding",
            "aten::index",
            "aten::gather",
            "aten::scatter",
            "aten::masked_fill",
            "aten::eq",
            "aten::lt",
            "aten::gt",
            "aten::ne",
            "aten::ge",
            "aten::le",
            "aten::cos",
            "aten::sin",
            "triton_",
        ),
    ),
)
CATEGORIES: tuple[str, ...] = tuple(name for name, _ in CATEGORY_KEYWORDS) + ("other",)
COMPUTE_CATEGORIES = frozenset({"attention", "gemm", "quantize"})


@lru_cache(maxsize=65536)
def categorize(name: str) -> str:
    """The category of one kernel or op name."""
    low = name.lower()
    for category, keywords in CATEGORY_KEYWORDS:
        if any(k in low for k in keywords):
            return category
    return "other"
