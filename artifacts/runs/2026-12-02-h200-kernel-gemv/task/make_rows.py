"""Production rows of this task from the extracted trace buckets: each `_gemv_kernel` bucket of the 8B
batch-1 decode trace maps back to its projection by its grid (n / BLOCK_N of the engine's tiles).

    python make_rows.py extracted.json > rows.json
"""

import json
import sys

from perfloop.engine.kernels import gemv

SHAPES = {  # Llama-3.1-8B, the engine's one-token path (decoder.forward_token, LM head)
    "qkv": (6144, 4096, "norm"),
    "o_proj": (4096, 4096, "residual"),
    "gate_up": (28672, 4096, "norm"),
    "down": (4096, 14336, "silu"),
    "lm_head": (128256, 4096, "plain"),
}

buckets = json.load(open(sys.argv[1]))
rows = []
for name, (n, k, form) in SHAPES.items():
    grid_x = -(-n // gemv.config(n, k).block_n)
    bucket = next(b for b in buckets if b["kernel"] == "_gemv_kernel" and b["grid"][:1] == [grid_x])
    rows.append({"id": name, "params": {"n": n, "k": k, "form": form}, "bucket": bucket["bucket"]})
print(json.dumps(rows, indent=2))
