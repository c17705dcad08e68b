"""Candidate: K split in two for the projections whose row blocks leave the memory pipes short of work
(qkv, o_proj, down), reduced through an fp32 workspace by the last slice to arrive; other shapes unsplit."""

from perfloop.engine.kernels import gemv

SPLIT = {(6144, 4096): 2, (4096, 4096): 2, (4096, 14336): 2}


def kernel(x, w, out, g, res, silu):
    split = SPLIT.get(tuple(w.shape), 1)
    gemv.linear(x, w, norm=(g, 1e-5) if g is not None else None, silu=silu, residual=res, split=split, out=out)
