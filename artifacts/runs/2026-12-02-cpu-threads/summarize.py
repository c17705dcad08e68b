"""Summarise measure.sh's result files into threads.json (output tok/s and effective threads per run)."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def main(raw: Path, out: Path) -> None:
    runs = []
    for path in sorted(raw.glob("*.json")):
        data = json.loads(path.read_text())
        mode, setting, rep, *side = path.stem.split("-")
        runs.append(
            {
                "file": path.name,
                "mode": mode,  # alone | pair (two engines at once)
                "threads_flag": setting.removeprefix("t"),  # 1, 2, or auto (no flag: the default)
                "rep": int(rep.removeprefix("r")),
                "side": side[0] if side else None,
                "effective_torch_threads": data["perfloop"]["environment"]["torch_threads"],
                "output_throughput": round(data["output_throughput"], 1),
                "duration_s": round(data["duration"], 3),
            }
        )
    summary = {}
    for key in sorted({(r["mode"], r["threads_flag"]) for r in runs}):
        values = [r["output_throughput"] for r in runs if (r["mode"], r["threads_flag"]) == key]
        median = round(statistics.median(values), 1)
        summary[f"{key[0]}/threads={key[1]}"] = {"median_output_tok_s": median, "runs": values}
    out.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
