"""Summarise results/ into summary.md: per side and concurrency, medians over rounds and ratios to perfloop.

Ratios are paired by round (same round, same prompts); the interval is the percentile bootstrap of the
median ratio (perfloop.bench.ab.bootstrap_median_ci). With 1-2 rounds it is the range of the ratios.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from pathlib import Path

from perfloop.bench.ab import bootstrap_median_ci
from perfloop.bench.result import BenchResult

HERE = Path(__file__).parent
BASE = "perfloop-fp32"
METRICS = (("output_throughput", "out tok/s"), ("median_ttft_ms", "median TTFT ms"), ("median_tpot_ms", "median TPOT ms"))


def main() -> None:
    runs: dict[tuple[str, int], dict[int, BenchResult]] = defaultdict(dict)
    for path in sorted((HERE / "results").glob("round*-c*.json")):
        m = re.match(r"round(\d+)-(.+)-c(\d+)\.json", path.name)
        if m:
            runs[(m[2], int(m[3]))][int(m[1])] = BenchResult.load(path)
    lines = ["| side | weights | conc. | rounds | " + " | ".join(f"{t} (ratio to perfloop, interval)" for _, t in METRICS) + " |"]
    lines.append("|---" * (4 + len(METRICS)) + "|")
    for (side, c), by_round in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        any_run = next(iter(by_round.values()))
        w = any_run.perfloop.environment.weights
        cells = []
        for metric, _ in METRICS:
            values = [r.metric(metric) for r in by_round.values()]
            cell = f"{statistics.median(values):,.1f}"
            base = runs.get((BASE, c), {})
            ratios = [by_round[k].metric(metric) / base[k].metric(metric) for k in by_round if k in base]
            if side != BASE and ratios:
                med, low, high = bootstrap_median_ci(ratios)
                cell += f" ({med:.2f}x, [{low:.2f}, {high:.2f}])"
            cells.append(cell)
        ok = all(r.perfloop.output_lengths.all_achieved and r.failed == 0 for r in by_round.values())
        weights = f"{w.precision} {w.format}" if w else "?"
        lines.append(f"| {side} | {weights} | {c} | {len(by_round)}{'' if ok else ' (!)'} | " + " | ".join(cells) + " |")
    (HERE / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
