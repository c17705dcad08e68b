"""Triton kernels of the bundled engine: paged attention, fused elementwise, one-token GEMV."""
