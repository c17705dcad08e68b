"""Engine step times of the standard workload on the H200, rebuilt from the benchmark's own request records.

The in-process backend stamps every request that got a token when `engine.step()` returns, so each
distinct stamp (start + ttft + cumulative itl) is one step, and the requests stamped there are the
step's batch. Reads ../2026-11-22-h200-standard/standard.requests.jsonl.gz (24,325 tok/s, 5.51 s) and
prints: the prefill phase, a least-squares fit of decode step time = fixed + context tokens x per-token
KV read, and the steps far above the fit.

    python artifacts/runs/2026-12-02-h200-loop-plan/step_times.py > .../step_times.txt
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

RECORDS = Path(__file__).parent.parent / "2026-11-22-h200-standard" / "standard.requests.jsonl.gz"
KV_BYTES_PER_TOKEN = 2 * 28 * 8 * 128 * 2  # K and V, 28 layers, 8 KV heads, head_dim 128, bf16
COPY_BW = 4.2865e12  # measured H200 copy bandwidth (kernel_bench.json), bytes/s


def steps() -> list[tuple[float, int, int]]:
    """(stamp s, batch size, context tokens read) of every step that returned tokens, in order."""
    records = [json.loads(line) for line in gzip.open(RECORDS)]
    plen = {r["index"]: r["prompt_len"] for r in records}
    stamped: dict[float, list[tuple[int, int]]] = defaultdict(list)
    for r in records:
        t = r["start"] + r["ttft"]
        stamped[round(t, 7)].append((r["index"], 0))
        for k, gap in enumerate(r["itl"]):
            t += gap
            stamped[round(t, 7)].append((r["index"], k + 1))
    return [(t, len(stamped[t]), sum(plen[i] + k for i, k in stamped[t])) for t in sorted(stamped)]


def main() -> None:
    rows = steps()
    stamps = np.array([0.0] + [r[0] for r in rows])
    dt = np.diff(stamps) * 1e3
    n = np.array([r[1] for r in rows])
    ctx = np.array([r[2] for r in rows], dtype=float)
    first_decode = int(np.argmax(n == n.max()))  # every request has had its prefill by then
    print(f"steps {len(rows)}, wall {stamps[-1]:.3f} s")
    print(f"prefill phase: {first_decode} steps, {dt[:first_decode].sum():.1f} ms "
          f"({', '.join(f'{x:.1f}' for x in dt[:first_decode])} ms)")
    a = np.stack([np.ones_like(ctx), ctx], axis=1)[first_decode:]
    y = dt[first_decode:]
    (fixed, per_token), *_ = np.linalg.lstsq(a, y, rcond=None)
    bw = KV_BYTES_PER_TOKEN / (per_token * 1e-3) / 1e12
    floor = ctx[first_decode:].sum() * KV_BYTES_PER_TOKEN / COPY_BW
    print(f"decode: {len(y)} steps, {y.sum():.1f} ms; fit: {fixed:.3f} ms fixed + context x "
          f"{per_token:.3e} ms ({bw:.2f} TB/s effective KV read)")
    print(f"  fixed part {fixed * len(y):.0f} ms, KV part {(y.sum() - fixed * len(y)):.0f} ms, "
          f"KV floor at copy bandwidth {floor * 1e3:.0f} ms")
    for lo, hi in ((1, 8), (8, 32), (32, 64), (64, 128), (128, 192), (192, 257)):
        m = (n[first_decode:] >= lo) & (n[first_decode:] < hi)
        print(f"  batch {lo:3d}-{hi - 1:3d}: {m.sum():4d} steps, mean {y[m].mean():.2f} ms, "
              f"fit {(a[m] @ [fixed, per_token]).mean():.2f} ms")
    resid = y - a @ [fixed, per_token]
    slow = np.flatnonzero(resid > 2.0)
    print(f"slow steps (> 2 ms over the fit): {len(slow)}, {resid[slow].sum():.1f} ms in all")
    for i in slow:
        j = i + first_decode
        nxt = n[j + 1] if j + 1 < len(n) else 0
        print(f"  step {j:4d}: {dt[j]:.2f} ms, +{resid[i]:.2f}; batch {n[j]} -> {nxt}")


if __name__ == "__main__":
    main()
