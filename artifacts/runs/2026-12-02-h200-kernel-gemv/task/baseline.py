"""Baseline: the engine's one-token GEMV (perfloop/engine/kernels/gemv.py, lineage in task.yaml), one
program per BLOCK_N rows over the whole K. Its source file is hash-pinned with the task."""

from perfloop.engine.kernels import gemv


def kernel(x, w, out, g, res, silu):
    gemv.linear(x, w, norm=(g, 1e-5) if g is not None else None, silu=silu, residual=res, split=1, out=out)
