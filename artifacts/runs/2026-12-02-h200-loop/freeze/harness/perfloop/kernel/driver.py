"""The process Nsight Compute profiles: one side of a task on one row, warmed up, then launched once more.

python -m perfloop.kernel.driver TASK --row R --side baseline|candidate [--candidate FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from perfloop.kernel.harness import Harness, kernel_fn
from perfloop.kernel.task import load_task

WARMUP = 5  # matches `--launch-skip` in ncu_command


def main(argv: list[str] | None = None) -> None:
    """Run WARMUP + 1 launches of the chosen side on the chosen row."""
    parser = argparse.ArgumentParser()
    parser.add_argument("task", type=Path)
    parser.add_argument("--row", required=True)
    parser.add_argument("--side", choices=("baseline", "candidate"), required=True)
    parser.add_argument("--candidate", type=Path)
    args = parser.parse_args(argv)
    task = load_task(args.task)
    row = next(r for r in task.rows if r.id == args.row)
    path = task.root / "baseline.py" if args.side == "baseline" else args.candidate
    fn = kernel_fn(path, args.side)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    inputs = Harness(task).inputs(row.params, device, seed=0)
    for _ in range(WARMUP + 1):
        fn(**inputs)
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
