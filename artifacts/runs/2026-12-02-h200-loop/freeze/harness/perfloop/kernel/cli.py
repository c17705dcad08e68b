"""`perfloop kernel ...`: production rows from a trace; a task's judged candidates, NCU digests, arbiter."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from perfloop.errors import UserError

app = typer.Typer(
    help="Kernel tasks: production rows, same-ABI A/B, NCU digests, dispatch, arbiter.", no_args_is_help=True
)
console = Console(soft_wrap=True)


def _fail(message: str) -> None:
    """A user mistake: one line on stderr, exit 2 (the `perfloop` command prints it)."""
    raise UserError(message)


@app.command("extract")
def extract(
    trace: Path = typer.Argument(..., help="torch-profiler trace captured with record_shapes."),
    kernel: str = typer.Option(None, "--kernel", help="Keep kernels whose name contains this."),
    stage: str = typer.Option(None, "--stage", help="Keep one stage (prefill, decode, ...)."),
    min_share: float = typer.Option(
        0.0, "--min-share", help="Drop buckets under this share of their stage (%)."
    ),
    out: Path = typer.Option(None, "--out", help="Write the rows as JSON here."),
) -> None:
    """Production rows: kernel, launch grid, op shapes, calls and share of device time, per shape bucket."""
    from perfloop.kernel.extract import extract_rows
    from perfloop.profilers.trace import TraceFormatError

    try:
        rows = extract_rows(trace, kernel, stage, min_share)
    except TraceFormatError as exc:
        _fail(str(exc))
    for r in rows:
        console.print(f"{r.share_pct:6.2f} %  {r.calls:6d} calls  {r.device_us:10.1f} us  {r.bucket}")
    if out is not None:
        out.write_text(json.dumps([r.model_dump(mode="json") for r in rows], indent=2) + "\n")
        console.print(f"wrote {len(rows)} rows to {out}")


@app.command("run")
def run(
    task: Path = typer.Argument(
        ..., help="Task folder (task.yaml, harness.py, baseline.py, rows.json, grid.json)."
    ),
    candidate: Path = typer.Option(
        ..., "--candidate", help="Candidate kernel file (same ABI as baseline.py)."
    ),
    direction: str = typer.Option("", "--direction", help="What the candidate tries, for the lineage."),
    device: str = typer.Option(None, "--device", help="cuda or cpu (default: cuda when present)."),
) -> None:
    """Gates, poisoned-output correctness, interleaved timing, per-bucket dispatch; all in the ledger."""
    import torch

    from perfloop.kernel.run import command_line, run_candidate
    from perfloop.kernel.task import TaskError, load_task

    if not candidate.is_file():
        _fail(f"--candidate: {candidate} is not a file")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        outcome = run_candidate(load_task(task), candidate, direction, dev, command_line())
    except TaskError as exc:
        _fail(str(exc))
    lin = outcome.lineage
    for d in outcome.dispatch:
        console.print(
            f"{d.bucket}: x{d.speedup:.3f} ({d.baseline_us:.2f} -> {d.candidate_us:.2f} us) {d.decision}"
        )
    head = f", geomean x{outcome.geomean:.4f}" if outcome.geomean is not None else ""
    console.print(
        f"{lin.id}: {lin.status}{head}" + (f" ({'; '.join(lin.gates_failed)})" if lin.gates_failed else "")
    )
    if lin.status == "REJECT" and lin.gates_failed:
        raise typer.Exit(1)


@app.command("ncu")
def ncu(
    task: Path = typer.Argument(..., help="Task folder."),
    row: str = typer.Option(..., "--row", help="Row id to profile."),
    candidate: Path = typer.Option(None, "--candidate", help="Also profile this candidate."),
) -> None:
    """Nsight Compute (`--set full`, `--clock-control none`) on one row: a digest per side in the ledger."""
    from perfloop.kernel.ncu import NcuError, digest, ncu_command, parse_raw_csv, run_ncu
    from perfloop.kernel.run import open_ledger
    from perfloop.kernel.task import TaskError, load_task

    try:
        spec = load_task(task)
        if row not in {r.id for r in spec.rows}:
            _fail(f"--row: {row} is not a row of {task} ({', '.join(r.id for r in spec.rows)})")
        ledger, _ = open_ledger(spec)
        sides = [("baseline", None)] + ([("candidate", candidate)] if candidate else [])
        for side, path in sides:
            d = digest(
                parse_raw_csv(run_ncu(ncu_command(spec.root, row, side, path, spec.spec.ncu_kernel))),
                side,
                row,
            )
            ledger.append("ncu", "PROFILED", data=d.model_dump(mode="json"))
            console.print(f"{side} {row}: {d.bound}; {d.reading}; stalls: {', '.join(d.top_stalls)}")
    except (NcuError, TaskError) as exc:
        _fail(str(exc))


@app.command("arbiter")
def arbiter(task: Path = typer.Argument(..., help="Task folder with an `arbiter:` section.")) -> None:
    """End-to-end A/B inside the engine (ABBA, fresh processes); records whether the kernel win survives."""
    from perfloop.kernel.arbiter import arbitrate
    from perfloop.kernel.run import open_ledger
    from perfloop.kernel.task import TaskError, load_task

    try:
        spec = load_task(task)
        if spec.spec.arbiter is None:
            _fail(f"{task}/task.yaml has no arbiter section")
        ledger, _ = open_ledger(spec)
        record = arbitrate(spec.spec.arbiter)
    except TaskError as exc:
        _fail(str(exc))
    ledger.append(
        "arbiter", "CONFIRMED" if record.confirmed else "NOT_CONFIRMED", data=record.model_dump(mode="json")
    )
    console.print(
        f"arbiter {record.metric}: x{record.ratio:.4f} ({'' if record.confirmed else 'not '}confirmed)"
    )


@app.command("status")
def status(task: Path = typer.Argument(..., help="Task folder.")) -> None:
    """Lineage (KEEP / REJECT / SUPERSEDED) and the current dispatch table."""
    from perfloop.kernel.run import latest_lineage
    from perfloop.kernel.task import TaskError, load_task
    from perfloop.ledger.store import Ledger

    try:
        spec = load_task(task)
    except TaskError as exc:
        _fail(str(exc))
    ledger = Ledger(spec.ledger_root)
    for rec in latest_lineage(ledger):
        console.print(f"{rec.id} <- {rec.parent}: {rec.status} {rec.benchmark} {'; '.join(rec.gates_failed)}")
    table = ledger.root / "dispatch.md"
    if table.exists():
        console.print(table.read_text())


if __name__ == "__main__":
    app()
