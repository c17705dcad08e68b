"""The ABI of the one-token GEMV task: inputs of one Llama-3.1-8B projection at batch 1, in bf16.

A row's params: n, k (weight [n, k]) and form: `norm` (RMSNorm folded in: qkv, gate_up), `residual`
(o_proj), `silu` (silu(gate) * up in, residual out: down), `plain` (LM head).
"""

import torch

OUTPUTS = ["out"]


def make_inputs(params, device, seed):
    n, k, form = params["n"], params["k"], params["form"]
    gen = torch.Generator(device=device).manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, device=device) * scale).to(torch.bfloat16)

    return {
        "x": rand(1, 2 * k if form == "silu" else k),
        "w": rand(n, k, scale=k**-0.5),
        "out": torch.empty(1, n, dtype=torch.bfloat16, device=device),
        "g": rand(k) if form == "norm" else None,
        "res": rand(1, n) if form in ("residual", "silu") else None,
        "silu": form == "silu",
    }


def roofline(params):
    n, k = params["n"], params["k"]
    return 2.0 * n * k, 2.0 * n * k  # flops, bytes: the weight read dominates everything else
