"""PNG plots for reports: latency CDFs (TTFT, TPOT, E2E) and throughput bars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from perfloop.bench.result import BenchResult, read_records  # noqa: E402


def _cdf(ax: plt.Axes, values_ms: list[float], label: str) -> None:
    if not values_ms:
        return
    xs = np.sort(values_ms)
    ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=label)


def plot_results(paths: Sequence[Path | str], out_dir: Path | str) -> list[Path]:
    """Write latency_cdf.png and throughput.png comparing the given results; returns the files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = [(Path(p), BenchResult.load(p)) for p in paths]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for path, result in results:
        done = [r for r in read_records(path) if r.success]
        label = result.label or path.stem
        _cdf(axes[0], [r.ttft * 1000 for r in done], label)
        _cdf(axes[1], [r.tpot() * 1000 for r in done if r.output_len > 1], label)
        _cdf(axes[2], [r.latency * 1000 for r in done], label)
    for ax, name in zip(axes, ("TTFT", "TPOT", "E2E latency"), strict=True):
        ax.set_xlabel(f"{name} (ms)")
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    cdf_path = out / "latency_cdf.png"
    fig.savefig(cdf_path, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [r.label or p.stem for p, r in results]
    values = [r.output_throughput for _, r in results]
    ax.bar(labels, values, color="tab:blue")
    ax.set_ylabel("output tokens/s")
    ax.set_title("output throughput")
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    bar_path = out / "throughput.png"
    fig.savefig(bar_path, dpi=110)
    plt.close(fig)
    return [cdf_path, bar_path]
