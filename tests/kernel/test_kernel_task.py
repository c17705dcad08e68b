"""Kernel tasks on the CPU: honest candidates are judged, planted kernel hacks are rejected by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfloop.cli import app
from perfloop.kernel.task import TaskError, load_task
from perfloop.ledger.kernel_records import LineageRecord
from perfloop.ledger.verify import verify_ledger

runner = CliRunner()


def kernel_run(task: Path, cand: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["kernel", "run", str(task), "--candidate", str(cand), "--direction", "test"])
    return result.exit_code, result.output


def lineage(task: Path) -> list[LineageRecord]:
    lines = (task / "ledger" / "solutions.jsonl").read_text().splitlines()
    return [LineageRecord.model_validate_json(line) for line in lines]


def last_lineage(task: Path) -> LineageRecord:
    from perfloop.kernel.run import previous
    from perfloop.ledger.store import Ledger

    return previous(Ledger(task / "ledger"))[-1]


def test_behaviour_preserving_candidate_is_timed_and_recorded(task_dir: Path, write_candidate) -> None:
    code, out = kernel_run(task_dir, write_candidate("good", "out.copy_(torch.nn.functional.linear(x, w))"))
    assert code == 0, out
    rec = last_lineage(task_dir)
    assert rec.correctness == "pass" and not rec.gates_failed
    assert rec.status in ("KEEP", "REJECT")  # either way it was timed, not refused
    assert "geomean" in rec.benchmark
    csv = (task_dir / "ledger" / "benchmark.csv").read_text().splitlines()
    assert csv[0].startswith("utc,host,gpu,row,shape,baseline_median_us")
    assert len(csv) == 1 + 2  # one row per production row
    dispatch = (task_dir / "ledger" / "dispatch.md").read_text()
    assert "decode/gemv/grid=12x1x1/dims=-" in dispatch and "active bound (NCU)" in dispatch
    assert verify_ledger(task_dir / "ledger").ok


@pytest.mark.parametrize(
    ("name", "body", "caught"),
    [
        ("partial", "out[:, : out.shape[1] // 2] = (x @ w.t())[:, : out.shape[1] // 2]", "poison:"),
        (
            "timed_shapes_only",
            "if (w.shape[0], w.shape[1]) in ((96, 64), (64, 160)):\n    out.copy_(x @ w.t())\n"
            "else:\n    out.copy_((x @ w.t()).half().float() * 1.01)",
            "match:grid",
        ),
        (
            "nan_on_rare_row",
            "out.copy_(x @ w.t())\nif w.shape[1] == 160:\n    out[0, 3] = float('nan')",
            "nan_inf:down",
        ),
        ("raises", "raise RuntimeError('unsupported')", "runs:"),
    ],
)
def test_numerical_hacks_fail_correctness_by_name(
    task_dir: Path, write_candidate, name, body, caught
) -> None:
    code, out = kernel_run(task_dir, write_candidate(name, body))
    rec = last_lineage(task_dir)
    assert rec.status == "REJECT"
    assert any(caught in why for why in rec.gates_failed), rec.gates_failed
    assert code == 1 and "REJECT" in out


@pytest.mark.parametrize(
    ("name", "body", "gate"),
    [
        ("fast_math", "torch.backends.cuda.matmul.allow_tf32 = True\nout.copy_(x @ w.t())", "build_flags"),
        (
            "env_flag",
            "import os\nos.environ['TRITON_F32_DEFAULT'] = 'tf32'\nout.copy_(x @ w.t())",
            "build_flags",
        ),
        ("clock", "import time\nout.copy_(x @ w.t())", "timing_code"),
        ("reads_rows", "open('rows.json')\nout.copy_(x @ w.t())", "timing_code"),
        ("secret", "key = 'sk-ant-" + "a" * 30 + "'\nout.copy_(x @ w.t())", "secrets"),
    ],
)
def test_static_gates_reject_before_timing(task_dir: Path, write_candidate, name, body, gate) -> None:
    code, _ = kernel_run(task_dir, write_candidate(name, body))
    rec = last_lineage(task_dir)
    assert code == 1 and rec.status == "REJECT"
    assert any(why.startswith(gate) for why in rec.gates_failed), rec.gates_failed
    assert rec.correctness == "not run" and rec.benchmark == "not run"


def test_changing_rows_after_timing_voids_the_task(task_dir: Path, write_candidate) -> None:
    assert kernel_run(task_dir, write_candidate("good", "out.copy_(x @ w.t())"))[0] == 0
    rows = json.loads((task_dir / "rows.json").read_text())
    (task_dir / "rows.json").write_text(json.dumps(rows[:1]))  # drop the row the candidate lost on
    code, _ = kernel_run(task_dir, write_candidate("other", "out.copy_(torch.mv(w, x[0])[None])"))
    assert code == 1
    assert any(
        why.startswith("frozen_task: rows.json changed") for why in last_lineage(task_dir).gates_failed
    )
    code, out = kernel_run(task_dir, write_candidate("third", "out.copy_(torch.mv(w, x[0]).unsqueeze(0))"))
    assert code == 2 and "is void" in out


def test_resubmitting_the_same_source_is_refused(task_dir: Path, write_candidate) -> None:
    path = write_candidate("good", "out.copy_(x @ w.t())")
    assert kernel_run(task_dir, path)[0] == 0
    code, _ = kernel_run(task_dir, path)
    assert code == 1
    assert last_lineage(task_dir).gates_failed == ["resubmitted: this source was already judged"]


def test_keep_supersedes_the_previous_keep(task_dir: Path, write_candidate, monkeypatch) -> None:
    import perfloop.kernel.run as kernel_run_module

    monkeypatch.setattr(kernel_run_module, "decide", _always_take(kernel_run_module.decide))
    assert kernel_run(task_dir, write_candidate("a", "out.copy_(x @ w.t())"))[0] == 0
    assert kernel_run(task_dir, write_candidate("b", "out.copy_(torch.mm(x, w.t()))"))[0] == 0
    records = {r.id.split("-")[0]: r for r in lineage(task_dir)}
    assert records["c1"].status == "SUPERSEDED" and records["c2"].status == "KEEP"
    assert records["c2"].parent == records["c1"].id


def _always_take(decide):
    def take(bucket, timing, min_speedup, bound):
        return decide(bucket, timing, 0.0, bound).model_copy(update={"decision": "candidate"})

    return take


def test_task_folder_errors_name_the_problem(tmp_path: Path, task_dir: Path) -> None:
    with pytest.raises(TaskError, match="grid.json is missing"):
        (task_dir / "grid.json").unlink()
        load_task(task_dir)
    result = runner.invoke(app, ["kernel", "run", str(tmp_path / "nope"), "--candidate", str(tmp_path)])
    assert result.exit_code == 2 and "is not a file" in result.output
