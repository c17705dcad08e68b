"""Tile sweep of the one-token GEMV kernels on the Llama-3.1-8B projection shapes, against cuBLAS.

    python -m benchmarks.gemv_bench --out DIR

Each timing replays a CUDA graph of back-to-back launches (as in the decode graph), cycling through
enough weight copies that every launch reads its weight from HBM, not from the 50 MB L2. The plain
kernel and the fused form the decoder uses (RMSNorm in, residual out, SiLU-mul in) are each swept
over tile shapes, next to cuBLAS and the unfused sequence the fused form replaces; the chosen tile
is also timed without programmatic dependent launch (PERFLOOP_PDL=0).
Writes gemv_sweep.json and prints a table.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
import typer
from rich.console import Console
from rich.table import Table

from perfloop.engine.kernels import fused, gemv

# name: (N, K, fused form) for Llama-3.1-8B; the fused form is how decoder.forward_token calls it.
SHAPES = {
    "qkv": (6144, 4096, "norm"),
    "o_proj": (4096, 4096, "residual"),
    "gate_up": (28672, 4096, "norm"),
    "down": (4096, 14336, "silu"),
    "lm_head": (128256, 4096, "plain"),
}
READ_BYTES = 512 * 2**20  # per timed round: 10x the H200's L2
DTYPE = torch.bfloat16


def candidates() -> list[gemv.Config]:
    """Tile shapes worth timing: 4-64 rows, 256-1024 columns, at most 16K elements per tile."""
    grid = itertools.product((4, 8, 16, 32, 64), (256, 512, 1024), (4, 8), (1, 2, 4))
    return [gemv.Config(*c) for c in grid if c[0] * c[1] <= 16384]


def graph_us(launches: list[Callable[[], Any]], rounds: int = 5) -> float:
    """Mean device microseconds per launch of a CUDA graph holding `launches` in order."""
    for f in launches:
        f()  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for f in launches:
            f()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(rounds):
        graph.replay()
    end.record()
    end.synchronize()
    return 1e3 * start.elapsed_time(end) / (rounds * len(launches))


class Operands:
    """Rotating weight copies and the activations of one shape."""

    def __init__(self, n: int, k: int) -> None:
        copies = max(1, -(-READ_BYTES // (n * k * 2)))
        self.weights = [torch.randn(n, k, device="cuda", dtype=DTYPE) * k**-0.5 for _ in range(copies)]
        self.x = torch.randn(1, k, device="cuda", dtype=DTYPE)
        self.gate_up = torch.randn(1, 2 * k, device="cuda", dtype=DTYPE)
        self.g = torch.ones(k, device="cuda", dtype=DTYPE)
        self.res = torch.randn(1, n, device="cuda", dtype=DTYPE)
        self.res_in = torch.randn(1, k, device="cuda", dtype=DTYPE)
        self.bytes = n * k * 2

    def gemv(self, form: str, cfg: gemv.Config | None) -> list[Callable[[], Any]]:
        """One launch per weight copy of the fused (or plain) GEMV."""
        kw: dict[str, Any] = {
            "plain": {},
            "norm": {"norm": (self.g, 1e-5)},
            "residual": {"residual": self.res},
            "silu": {"silu": True, "residual": self.res},
        }[form]
        x = self.gate_up if form == "silu" else self.x
        return [lambda w=w: gemv.linear(x, w, cfg=cfg, **kw) for w in self.weights]

    def cublas(self, form: str) -> list[Callable[[], Any]]:
        """The unfused sequence the fused form replaces: small kernel(s) plus a cuBLAS GEMM."""

        def run(w: torch.Tensor) -> Any:
            if form == "norm":
                return F.linear(fused.rms_norm(self.x, self.g, 1e-5, self.res_in)[0], w)
            if form == "silu":
                return F.linear(fused.silu_and_mul(self.gate_up), w) + self.res
            out = F.linear(self.x, w)
            return out + self.res if form == "residual" else out

        return [lambda w=w: run(w) for w in self.weights]

    def matmul(self) -> list[Callable[[], Any]]:
        return [lambda w=w: F.linear(self.x, w) for w in self.weights]


def sweep() -> dict[str, Any]:
    """Per shape: cuBLAS plain/unfused times, the best plain tile, and the best tile of the fused form."""
    results: dict[str, Any] = {}
    for name, (n, k, form) in SHAPES.items():
        ops = Operands(n, k)
        tiles = [c for c in candidates() if n % c.block_n == 0 and k % c.block_k == 0]
        plain = min((graph_us(ops.gemv("plain", c)), c) for c in tiles)
        fused_us, cfg = min((graph_us(ops.gemv(form, c)), c) for c in tiles) if form != "plain" else plain
        with mock.patch.dict(os.environ, {"PERFLOOP_PDL": "0"}):
            no_pdl = graph_us(ops.gemv(form, cfg))
        results[name] = {
            "n": n,
            "k": k,
            "form": form,
            "weight_mb": ops.bytes / 1e6,
            "cublas_us": graph_us(ops.matmul()),
            "unfused_us": graph_us(ops.cublas(form)),
            "plain_us": plain[0],
            "plain_config": plain[1]._asdict(),
            "fused_us": fused_us,
            "fused_tb_s": ops.bytes / fused_us / 1e6,
            "fused_no_pdl_us": no_pdl,
            "config": cfg._asdict(),
        }
        del ops
        torch.cuda.empty_cache()
    return results


def apply(results: dict[str, Any]) -> None:
    """Make the sweep's best tile per (N, K) the one `gemv.linear` uses in this process."""
    gemv.TUNED.update({(r["n"], r["k"]): gemv.Config(**r["config"]) for r in results.values()})


def table(results: dict[str, Any]) -> Table:
    t = Table(title="one-token GEMV (bf16, weights read from HBM), us per launch")
    cols = ("shape", "MB", "cuBLAS", "unfused", "plain", "fused, no PDL", "fused", "TB/s", "tile")
    for col in cols:
        t.add_column(col)
    for name, r in results.items():
        c = r["config"]
        t.add_row(
            f"{name} {r['n']}x{r['k']} ({r['form']})", f"{r['weight_mb']:.1f}", f"{r['cublas_us']:.1f}",
            f"{r['unfused_us']:.1f}", f"{r['plain_us']:.1f}",
            f"{r['fused_no_pdl_us']:.1f}", f"{r['fused_us']:.1f}",
            f"{r['fused_tb_s']:.2f}",
            f"{c['block_n']}x{c['block_k']} w{c['num_warps']} s{c['num_stages']}",
        )  # fmt: skip
    return t


def main(out: Path = typer.Option(..., "--out", help="Folder for gemv_sweep.json.")) -> None:
    """Sweep, save and print."""
    results = sweep()
    out.mkdir(parents=True, exist_ok=True)
    (out / "gemv_sweep.json").write_text(json.dumps(results, indent=2))
    Console().print(table(results))


if __name__ == "__main__":
    typer.run(main)
