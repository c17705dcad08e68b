"""Measured outputs: the tokens the benchmark itself generated, checked against the frozen base's.

Correctness commands run their own prompts; a candidate that takes a lighter path only when
it is measured (or only on shapes the correctness prompts never reach) still has to produce,
in the measured run, the greedy tokens the base produced at FREEZE for the same requests.
"""

from __future__ import annotations

from pathlib import Path

from perfloop.bench.result import read_records
from perfloop.ledger.evidence_records import MeasuredOutputs, OutputsCheck
from perfloop.ledger.records import BenchRecord

REFERENCE = "freeze/outputs.json"


def _ids(result_file: Path) -> dict[int, list[int]] | None:
    records = read_records(result_file)
    if not records or any(r.output_ids is None for r in records if r.success):
        return None
    return {r.index: list(r.output_ids or []) for r in records if r.success}


def _side_files(bench: BenchRecord, root: Path, side: str) -> list[Path]:
    return [root / f for f in bench.result_files if f.endswith(f"-{side}.json")]


def reference_outputs(aa: BenchRecord, root: Path) -> MeasuredOutputs | None:
    """The first A trial's tokens (None when the launch returns no ids)."""
    for path in _side_files(aa, root, "A"):
        ids = _ids(path)
        if ids is not None:
            return MeasuredOutputs(source=path.relative_to(root).as_posix(), outputs=ids)
    return None


def check_outputs(reference: MeasuredOutputs, bench: BenchRecord, root: Path) -> OutputsCheck | None:
    """Every candidate (B) trial's tokens against the reference, request by request."""
    files = _side_files(bench, root, "B")
    differ: list[str] = []
    for path in files:
        ids = _ids(path)
        if ids is None:
            return None
        bad = [i for i, ref in reference.outputs.items() if ids.get(i) != ref]
        if bad:
            differ.append(f"{path.name}: requests {bad[:8]}{'...' if len(bad) > 8 else ''}")
    if differ:
        return OutputsCheck(
            passed=False, evidence="measured tokens differ from the base's: " + "; ".join(differ)
        )
    n = len(reference.outputs)
    return OutputsCheck(
        passed=True, evidence=f"{len(files)} measured trials x {n} requests equal the base's tokens"
    )
