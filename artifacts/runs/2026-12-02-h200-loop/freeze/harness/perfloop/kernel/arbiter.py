"""`perfloop kernel arbiter`: the end-to-end A/B that a kernel win must survive inside the engine.

The task's arbiter command (e.g. the GPU suite's 8B batch-1 part) runs once per side in a fresh process,
interleaved ABBA, the candidate side with the environment that turns its dispatch on.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess

from perfloop.kernel.task import Arbiter, TaskError
from perfloop.ledger.kernel_records import ArbiterRecord


def run_side(cfg: Arbiter, env: dict[str, str]) -> float:
    """One run of the arbiter command; the metric from its last JSON line."""
    out = subprocess.run(
        cfg.command, shell=True, capture_output=True, text=True, env={**os.environ, **env}, check=False
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-2:]
        raise TaskError(f"arbiter: `{cfg.command}` failed (exit {out.returncode}): {' / '.join(tail)}")
    value = json.loads(lines[-1]).get(cfg.metric)
    if not isinstance(value, int | float):
        raise TaskError(f"arbiter: the last JSON line has no numeric `{cfg.metric}`")
    return float(value)


def arbitrate(cfg: Arbiter) -> ArbiterRecord:
    """ABBA runs; confirmed when the candidate's median over the baseline's reaches `min_ratio`."""
    base, cand = [], []
    for i in range(cfg.runs):
        sides = [(base, cfg.baseline_env), (cand, cfg.candidate_env)]
        for out, env in sides if i % 2 == 0 else sides[::-1]:
            out.append(run_side(cfg, env))
    ratio = statistics.median(cand) / statistics.median(base)
    return ArbiterRecord(
        command=cfg.command, metric=cfg.metric, baseline=base, candidate=cand,
        ratio=round(ratio, 4), confirmed=ratio >= cfg.min_ratio,
    )  # fmt: skip
