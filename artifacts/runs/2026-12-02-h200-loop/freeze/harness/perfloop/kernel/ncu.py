"""`perfloop kernel ncu`: Nsight Compute on one row, baseline or candidate, read into a digest.

The digest is interpreted by the kernel's character: a memory-bound kernel is judged by DRAM/L2
throughput, a compute-bound one by SM and tensor-pipe use, a small latency-bound one by its stalls.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

from perfloop.ledger.kernel_records import Bound, NcuDigest

METRICS = {
    "duration_us": ("gpu__time_duration.sum", 1e-3),  # ns -> us
    "dram_throughput_pct": ("gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed", 1.0),
    "l2_throughput_pct": ("lts__throughput.avg.pct_of_peak_sustained_elapsed", 1.0),
    "sm_busy_pct": ("sm__throughput.avg.pct_of_peak_sustained_elapsed", 1.0),
    "tensor_pipe_pct": ("sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active", 1.0),
    "achieved_occupancy_pct": ("sm__warps_active.avg.pct_of_peak_sustained_active", 1.0),
    "theoretical_occupancy_pct": ("sm__maximum_warps_per_active_cycle_pct", 1.0),
    "registers_per_thread": ("launch__registers_per_thread", 1.0),
}
STALL_PREFIX = "smsp__average_warps_issue_stalled_"
STALL_SUFFIX = "_per_issue_active.ratio"


class NcuError(RuntimeError):
    """Nsight Compute is missing or failed."""


def ncu_command(task_root: Path, row: str, side: str, candidate: Path | None, kernel_regex: str) -> list[str]:
    """The profiled command: one warmed-up launch of one side on one row, full section set."""
    if shutil.which("ncu") is None:
        raise NcuError("ncu (Nsight Compute) is not on PATH; `perfloop kernel ncu` needs a CUDA host with it")
    driver = [sys.executable, "-m", "perfloop.kernel.driver", str(task_root), "--row", row, "--side", side]
    if candidate is not None:
        driver += ["--candidate", str(candidate)]
    kernel = ["-k", f"regex:{kernel_regex}"] if kernel_regex else []
    return [
        "ncu", "--set", "full", "--clock-control", "none", "--target-processes", "all", *kernel,
        "--launch-skip", "5", "--launch-count", "1", "--csv", "--page", "raw", *driver,
    ]  # fmt: skip


def run_ncu(cmd: list[str]) -> str:
    """Run ncu; its CSV on success."""
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0 or '"ID"' not in out.stdout:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise NcuError(f"ncu failed (exit {out.returncode}): {' / '.join(tail)}")
    return out.stdout


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def parse_raw_csv(text: str) -> dict[str, str]:
    """The first profiled launch of `ncu --csv --page raw`: metric name -> value (units row skipped)."""
    lines = [line for line in text.splitlines() if line.startswith('"')]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    if len(rows) < 3:
        raise NcuError("ncu printed no profiled launch (check the kernel regex)")
    return dict(zip(rows[0], rows[2], strict=False))


def digest(metrics: dict[str, str], side: str, row: str) -> NcuDigest:
    """Read the metrics by the kernel's character into a digest."""
    values = {
        field: (v * scale if (v := _number(metrics.get(name, ""))) is not None else None)
        for field, (name, scale) in METRICS.items()
    }
    stalls = sorted(
        ((k[len(STALL_PREFIX) : -len(STALL_SUFFIX)], _number(v) or 0.0) for k, v in metrics.items()
         if k.startswith(STALL_PREFIX) and k.endswith(STALL_SUFFIX)),
        key=lambda kv: -kv[1],
    )  # fmt: skip
    bound, reading = classify(values)
    return NcuDigest(
        side=side, row=row, kernel=metrics.get("Kernel Name", ""),
        top_stalls=[f"{n} {v:.2f}" for n, v in stalls[:3]],
        bound=bound, reading=reading, metrics=metrics, **values,
    )  # fmt: skip


def classify(v: dict[str, float | None]) -> tuple[Bound, str]:
    """Memory, compute or latency bound, with the sentence a reviewer needs."""
    dram, sm, tensor = v["dram_throughput_pct"] or 0.0, v["sm_busy_pct"] or 0.0, v["tensor_pipe_pct"] or 0.0
    if dram >= 60:
        return "memory", f"DRAM at {dram:.0f} % of peak: only fewer bytes (fusion, smaller dtype) move it"
    if sm >= 60 or tensor >= 60:
        return "compute", f"SM {sm:.0f} %, tensor pipe {tensor:.0f} %: fewer or cheaper instructions move it"
    occ, theo = v["achieved_occupancy_pct"] or 0.0, v["theoretical_occupancy_pct"] or 0.0
    regs = v["registers_per_thread"] or 0.0
    return "latency", (
        f"DRAM {dram:.0f} %, SM {sm:.0f} %, occupancy {occ:.0f} % (at most {theo:.0f} % at {regs:.0f} "
        "registers/thread): more bytes in flight or fewer launches move it"
    )
