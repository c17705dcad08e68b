"""The PR report renders from ledger records only: every number in it traces to a record."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import FakeBackend, ScriptedPatcher, make_spec, set_config

from perfloop.ledger.verify import verify_ledger
from perfloop.loop.machine import Run
from perfloop.loop.report import build_report, measured_on

NUMBER = re.compile(r"(?<![\w.#/-])-?\d+(?:\.\d+)?(?![\w.])")


def _record_numbers(root: Path) -> set[float]:
    """Every number in any JSON record of the run (and in the text of its string fields)."""
    found: set[float] = set()

    def walk(value: object) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, int | float):
            found.add(float(value))
        elif isinstance(value, str):
            found.update(float(m) for m in NUMBER.findall(value))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for path in root.rglob("*.json"):
        walk(json.loads(path.read_text()))
    for line in (root / "events.jsonl").read_text().splitlines():
        walk(json.loads(line))
    # The verification counts are computed from the ledger itself.
    report = verify_ledger(root)
    found.update({float(report.events), float(report.files)})
    return found


def _traces(token: str, numbers: set[float]) -> bool:
    value = float(token)
    decimals = len(token.split(".")[1]) if "." in token else 0
    tol = 0.5 * 10**-decimals + 1e-12
    return any(abs(value - n) <= tol for n in numbers)


def test_report_numbers_all_trace_to_records(tmp_path: Path, target_repo: Path) -> None:
    edits = [set_config(block_size=32), set_config(enable_prefix_caching=True)]
    run = Run.create(make_spec(target_repo, tmp_path), FakeBackend(), ScriptedPatcher(edits))
    run.drive()
    out = build_report(run.root)
    text = out.read_text()
    assert "## Before / after" in text and "## Rounds" in text and "## Reproduce" in text
    assert "Rejected by: `beyond_noise`" in text
    # Each round shows the profiler rows behind its gap, by row id (the engine counters are no op).
    assert "| `prefill/kernel_table/aten::mm` |  | 60.0 |" in text and "engine_stats" not in text
    assert "![ratios per round](plots/rounds.png)" in text and (out.parent / "plots/rounds.png").exists()
    numbers = _record_numbers(run.root)
    # Identifiers (SHAs, fingerprints, paths) are not measurements; strip them before checking.
    prose = re.sub(r"`[^`]*`|\([^)]*\.png\)|[0-9a-f]{12,}", "", text)
    untraced = [tok for tok in NUMBER.findall(prose) if not _traces(tok, numbers)]
    assert not untraced, untraced


def test_report_names_the_machine_the_trials_ran_on_when_it_is_not_the_loop_host(tmp_path: Path) -> None:
    """Batch jobs measure on another machine: the trial records' fingerprint is shown, not only the host's."""
    host = {"cpu_model": "AMD EPYC", "gpu_models": [], "torch": "2.13.0+cpu"}
    trial = tmp_path / "freeze" / "aa" / "trials" / "job-000-A"
    trial.mkdir(parents=True)
    gpu = host | {"gpu_models": ["NVIDIA H200"], "torch": "2.11.0+cu130", "hostname_hash": "x"}
    (trial / "record.json").write_text(json.dumps({"perfloop": {"environment": gpu}}))
    assert measured_on(tmp_path, host) == {
        "cpu_model": "AMD EPYC",
        "gpu_models": ["NVIDIA H200"],
        "torch": "2.11.0+cu130",
    }
    (trial / "record.json").write_text(json.dumps({"perfloop": {"environment": host}}))
    assert measured_on(tmp_path, host) is None  # measured where the loop runs: one section
