"""Candidate: K split in four for qkv, o_proj and down (more programs in flight per projection)."""

from perfloop.engine.kernels import gemv

SPLIT = {(6144, 4096): 4, (4096, 4096): 4, (4096, 14336): 4}


def kernel(x, w, out, g, res, silu):
    split = SPLIT.get(tuple(w.shape), 1)
    gemv.linear(x, w, norm=(g, 1e-5) if g is not None else None, silu=silu, residual=res, split=split, out=out)
