"""Wall time the accuracy gate adds to a round: one side's accuracy phase as the loop runs it.

`python gate_wall.py OUT.json [MAX_ITEMS PROMPTS TOKENS]...`: for each (items, prompts, tokens)
setting, SmolLM2-135M fp32 served by `perfloop serve` (one torch thread) is evaluated with
`perfloop.loop.accuracy.evaluate`, the function VALIDATE calls for each candidate; the record's
launch / task / consistency seconds are what the phase adds to a round (FREEZE pays it once more
for the baseline). The mechanical gates' own time is measured on the judged record.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from perfloop.loop.accuracy import evaluate, freeze_bars, judge
from perfloop.loop.measurement import Side
from perfloop.loop.spec import AccuracySpec

LAUNCH = "engine:--model preset:smollm2-135m --torch-threads 1"


def main(out: Path, settings: list[tuple[int, int, int]]) -> None:
    rows = []
    for items, prompts, tokens in settings:
        acc = AccuracySpec(max_items=items, prompts=prompts, tokens=tokens, vocab=49152)
        with tempfile.TemporaryDirectory() as tmp:
            run = evaluate(Side(name="candidate", launch=LAUNCH), acc, None, Path(tmp))
        start = time.perf_counter()
        verdict = judge(freeze_bars(acc, run), run)
        judge_s = time.perf_counter() - start
        rows.append(
            {
                "max_items": items, "prompts": prompts, "tokens": tokens, "accuracy": run.task.accuracy,
                "launch_s": run.launch_s, "task_s": run.task_s, "consistency_s": run.consistency_s,
                "judge_s": round(judge_s, 6), "passed_against_itself": verdict.passed,
            }
        )  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[2:]] or [24, 4, 16]
    main(Path(sys.argv[1]), [tuple(args[i : i + 3]) for i in range(0, len(args), 3)])  # type: ignore[misc]
