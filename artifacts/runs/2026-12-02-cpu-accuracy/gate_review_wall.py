"""Wall time of each registry gate judging one recorded round (REVIEW), median of 5.

`python gate_review_wall.py RUN_FOLDER ROUND OUT.json`: the round's gate input is read from the
run's ledger exactly as REVIEW reads it; each gate is then timed alone.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from perfloop.ledger.records import PatchRecord
from perfloop.loop.gates import GATES, run_gate
from perfloop.loop.machine import Run


def main(root: Path, number: int, out: Path) -> None:
    run = Run(root, backend=None, patcher=None)  # type: ignore[arg-type]  # only the records are read
    patch = PatchRecord.model_validate_json((root / f"rounds/{number:03d}/patch.json").read_text())
    run.state = run.state.model_copy(update={"round": number, "pending_commit": patch.commit})
    inp = run._review_input()
    times = {}
    for name, gate in GATES.items():
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            run_gate(gate, inp)
            samples.append(time.perf_counter() - start)
        times[name] = round(statistics.median(samples), 6)
    print(json.dumps(times, indent=2))
    out.write_text(json.dumps(times, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
